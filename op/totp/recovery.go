package totp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"strings"
)

// RecoveryCodeCount codes of 128 random bits each are issued at enrollment
// (docs/THREAT-MODEL.md R-S4): enough entropy that SHA-256 is the right store.
const RecoveryCodeCount = 10

var recoveryEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewRecoveryCodes returns codes to show once, grouped for reading, and
// their digests to store.
func NewRecoveryCodes() ([]string, [][]byte, error) {
	codes := make([]string, RecoveryCodeCount)
	hashes := make([][]byte, RecoveryCodeCount)
	for i := range codes {
		raw := make([]byte, 16)
		if _, err := rand.Read(raw); err != nil {
			return nil, nil, err
		}
		c := strings.ToLower(recoveryEncoding.EncodeToString(raw)) // 26 characters
		codes[i] = c[:5] + "-" + c[5:10] + "-" + c[10:15] + "-" + c[15:20] + "-" + c[20:]
		hashes[i] = RecoveryHash(c)
	}
	return codes, hashes, nil
}

// NormalizeRecoveryCode accepts what people type: any case, with or
// without the dashes and spaces.
func NormalizeRecoveryCode(s string) (string, bool) {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ' || r == '\t':
			return -1
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return r
	}, s)
	if len(s) != 26 {
		return "", false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '2' && r <= '7') {
			return "", false
		}
	}
	return s, true
}

// RecoveryHash is the stored digest of a normalised recovery code.
func RecoveryHash(normalized string) []byte {
	h := sha256.Sum256([]byte("recovery-code:v1:" + normalized))
	return h[:]
}
