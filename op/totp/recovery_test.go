package totp

import (
	"strings"
	"testing"
)

// FuzzNormalizeRecoveryCode: an accepted recovery code is 26 characters of
// the lower-case base32 alphabet, normalising is idempotent, and every
// generated code is accepted as itself.
func FuzzNormalizeRecoveryCode(f *testing.F) {
	codes, _, err := NewRecoveryCodes()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range append(codes[:2], "ABCDE-FGHIJ-KLMNO-PQRST-UVWXYZ", "abcde fghij klmno pqrst uvwxyz", "abcdefghijklmnopqrstuvwxy1", "ａbcde-fghij-klmno-pqrst-uvwxyz", "") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := NormalizeRecoveryCode(s)
		if !ok {
			return
		}
		if len(c) != 26 || strings.Trim(c, "abcdefghijklmnopqrstuvwxyz234567") != "" {
			t.Fatalf("NormalizeRecoveryCode(%q) = %q", s, c)
		}
		if again, ok := NormalizeRecoveryCode(c); !ok || again != c {
			t.Fatalf("NormalizeRecoveryCode(%q) = %q, then %q", s, c, again)
		}
	})
}
