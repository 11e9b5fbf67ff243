package op

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// randomID returns n random bytes, base64url without padding.
func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashSecret is the lookup key of a high-entropy secret (codes, tokens,
// cookies): random values of ≥128 bits need no slow KDF.
func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}
