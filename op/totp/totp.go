// Package totp is the second factor's arithmetic: RFC 6238 codes (SHA-1,
// six digits, 30 s steps, for authenticator-app compatibility), the
// accepted window (the current and the previous step, never a future one:
// docs/THREAT-MODEL.md R-T2), what people type normalised, and new
// secrets with their provisioning keys (160 bits: R-T3), and the recovery
// codes that stand in for a code (recovery.go, R-S4). Replay and the
// attempt guard are the store's (rule 6, rule 3).
package totp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp"
	ptotp "github.com/pquerna/otp/totp"
)

// TOTP parameters: SHA-1, 6 digits, 30 s, for authenticator-app
// compatibility (RFC 6238 defaults).
const (
	Period = 30
	Digits = 6
)

// Step is the RFC 6238 time step T of t on the server's clock.
func Step(t time.Time) int64 { return t.Unix() / Period }

// Code is the HOTP value (RFC 4226 §5.3) of secret at counter.
func Code(secret []byte, counter int64) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(counter))
	m := hmac.New(sha1.New, secret)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1000000)
}

// Match returns the time step whose code equals code, trying only the
// current and the previous step (RFC 6238 §5.2 allows one step of delay;
// a future step is never accepted). Comparison is constant-time per step.
func Match(secret []byte, code string, now time.Time) (int64, bool) {
	if len(code) != Digits {
		return 0, false
	}
	cur := Step(now)
	var found int64
	ok := 0
	for _, step := range []int64{cur, cur - 1} {
		if subtle.ConstantTimeCompare([]byte(Code(secret, step)), []byte(code)) == 1 && ok == 0 {
			found, ok = step, 1
		}
	}
	return found, ok == 1
}

// Normalize strips the spaces and dashes people type or paste; anything
// but six digits is malformed.
func Normalize(s string) (string, bool) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '-' {
			return -1
		}
		return r
	}, s)
	if len(s) != Digits {
		return "", false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return s, true
}

// NewSecret is a new 160-bit secret from crypto/rand (RFC 4226 §4 R6).
func NewSecret() ([]byte, error) {
	secret := make([]byte, 20)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	return secret, nil
}

// Key is the provisioning key (otpauth:// URI, QR image) of secret for
// account at issuer, with this package's parameters.
func Key(issuer, account string, secret []byte) (*otp.Key, error) {
	return ptotp.Generate(ptotp.GenerateOpts{
		Issuer: issuer, AccountName: account, Secret: secret,
		Period: Period, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
}

// GroupKey writes a base32 key in groups of four for typing by hand.
func GroupKey(b32 string) string {
	var parts []string
	for i := 0; i < len(b32); i += 4 {
		parts = append(parts, b32[i:min(i+4, len(b32))])
	}
	return strings.Join(parts, " ")
}
