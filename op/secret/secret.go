// Package secret makes and looks up the provider's random secrets: auth
// request ids, flow and session cookies, codes, tokens, device cookies.
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// New returns n random bytes, base64url without padding.
func New(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Hash is the lookup key of a high-entropy secret (codes, tokens,
// cookies): random values of ≥128 bits need no slow KDF
// (NIST SP 800-63B-4 §3.1.1.2 asks a slow hash of passwords only).
func Hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}
