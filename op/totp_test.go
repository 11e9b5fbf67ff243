package op

import (
	"encoding/base32"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// RFC 6238 Appendix B test vectors (SHA-1, 8 digits there; we compare the
// last 6 digits, which is what a 6-digit HOTP truncation yields).
func TestTOTPCodeRFC6238Vectors(t *testing.T) {
	secret := []byte("12345678901234567890")
	cases := map[int64]string{59: "287082", 1111111109: "081804", 1111111111: "050471", 1234567890: "005924", 2000000000: "279037", 20000000000: "353130"}
	for unix, want := range cases {
		if got := totpCode(secret, totpStep(time.Unix(unix, 0))); got != want {
			t.Errorf("t=%d: code %s, want %s", unix, got, want)
		}
	}
}

func TestTOTPCodeMatchesIndependentLibrary(t *testing.T) {
	secret := []byte("an independent check secret")
	key := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
	for c := int64(0); c < 50; c++ {
		want, err := hotp.GenerateCodeCustom(key, uint64(c), hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		if got := totpCode(secret, c); got != want {
			t.Fatalf("counter %d: %s, want %s", c, got, want)
		}
	}
}

// TestTOTPWindow: the current and the previous step are accepted; the next
// step and two steps back are not (RFC 6238 §5.2, docs/THREAT-MODEL.md R-T2).
func TestTOTPWindow(t *testing.T) {
	secret := []byte("12345678901234567890")
	now := time.Unix(1_800_000_015, 0)
	cur := totpStep(now)
	cases := []struct {
		step int64
		ok   bool
	}{{cur, true}, {cur - 1, true}, {cur + 1, false}, {cur - 2, false}}
	for _, c := range cases {
		got, ok := matchTOTP(secret, totpCode(secret, c.step), now)
		if ok != c.ok || (ok && got != c.step) {
			t.Errorf("step %+d: matched %v at %d, want %v", c.step-cur, ok, got, c.ok)
		}
	}
	if _, ok := matchTOTP(secret, "12345", now); ok {
		t.Error("5-digit code accepted")
	}
	if _, ok := matchTOTP(secret, "", now); ok {
		t.Error("empty code accepted")
	}
}

func TestNormalizeCode(t *testing.T) {
	cases := map[string]string{"123456": "123456", " 123 456 ": "123456", "123-456": "123456"}
	for in, want := range cases {
		if got, ok := normalizeCode(in); !ok || got != want {
			t.Errorf("normalizeCode(%q) = %q %v", in, got, ok)
		}
	}
	for _, bad := range []string{"12345", "1234567", "12a456", "１２３４５６", ""} {
		if _, ok := normalizeCode(bad); ok {
			t.Errorf("normalizeCode(%q) accepted", bad)
		}
	}
}
