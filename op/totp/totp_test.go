package totp

import (
	"encoding/base32"
	"strings"
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
		if got := Code(secret, Step(time.Unix(unix, 0))); got != want {
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
		if got := Code(secret, c); got != want {
			t.Fatalf("counter %d: %s, want %s", c, got, want)
		}
	}
}

// TestTOTPWindow: the current and the previous step are accepted; the next
// step and two steps back are not (RFC 6238 §5.2, docs/THREAT-MODEL.md R-T2).
func TestTOTPWindow(t *testing.T) {
	secret := []byte("12345678901234567890")
	now := time.Unix(1_800_000_015, 0)
	cur := Step(now)
	cases := []struct {
		step int64
		ok   bool
	}{{cur, true}, {cur - 1, true}, {cur + 1, false}, {cur - 2, false}}
	for _, c := range cases {
		got, ok := Match(secret, Code(secret, c.step), now)
		if ok != c.ok || (ok && got != c.step) {
			t.Errorf("step %+d: matched %v at %d, want %v", c.step-cur, ok, got, c.ok)
		}
	}
	if _, ok := Match(secret, "12345", now); ok {
		t.Error("5-digit code accepted")
	}
	if _, ok := Match(secret, "", now); ok {
		t.Error("empty code accepted")
	}
}

func TestNormalizeCode(t *testing.T) {
	cases := map[string]string{"123456": "123456", " 123 456 ": "123456", "123-456": "123456"}
	for in, want := range cases {
		if got, ok := Normalize(in); !ok || got != want {
			t.Errorf("Normalize(%q) = %q %v", in, got, ok)
		}
	}
	for _, bad := range []string{"12345", "1234567", "12a456", "１２３４５６", ""} {
		if _, ok := Normalize(bad); ok {
			t.Errorf("Normalize(%q) accepted", bad)
		}
	}
}

// FuzzNormalizeCode: an accepted code is exactly six ASCII digits and
// normalising it again changes nothing.
func FuzzNormalizeCode(f *testing.F) {
	for _, s := range []string{"123456", " 123 456 ", "123-456", "１２３４５６", "12345", "1234567", "12345\x00", "٣٤٥٦٧٨", "12 34\t56"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := Normalize(s)
		if !ok {
			return
		}
		if len(c) != Digits || strings.Trim(c, "0123456789") != "" {
			t.Fatalf("Normalize(%q) = %q", s, c)
		}
		if again, ok := Normalize(c); !ok || again != c {
			t.Fatalf("Normalize(%q) = %q, then %q", s, c, again)
		}
	})
}
