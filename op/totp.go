package op

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"time"
)

// TOTP parameters: SHA-1, 6 digits, 30 s, for authenticator-app
// compatibility (RFC 6238 defaults).
const (
	totpPeriod = 30
	totpDigits = 6
)

// totpStep is the RFC 6238 time step T of t on the server's clock.
func totpStep(t time.Time) int64 { return t.Unix() / totpPeriod }

// totpCode is the HOTP value (RFC 4226 §5.3) of secret at counter.
func totpCode(secret []byte, counter int64) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(counter))
	m := hmac.New(sha1.New, secret)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1000000)
}

// matchTOTP returns the time step whose code equals code, trying only the
// current and the previous step (RFC 6238 §5.2 allows one step of delay;
// a future step is never accepted). Comparison is constant-time per step.
func matchTOTP(secret []byte, code string, now time.Time) (int64, bool) {
	if len(code) != totpDigits {
		return 0, false
	}
	cur := totpStep(now)
	var found int64
	ok := 0
	for _, step := range []int64{cur, cur - 1} {
		if subtle.ConstantTimeCompare([]byte(totpCode(secret, step)), []byte(code)) == 1 && ok == 0 {
			found, ok = step, 1
		}
	}
	return found, ok == 1
}
