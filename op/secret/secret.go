// Package secret makes and looks up the provider's random secrets: auth
// request ids, flow and session cookies, codes, tokens, device cookies.
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
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

// S256Challenge is BASE64URL(SHA256(verifier)), a PKCE S256 challenge
// (RFC 7636 §4.2).
func S256Challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// S256Matches compares verifier's S256 challenge with challenge in
// constant time (RFC 7636 §4.6); an empty verifier never matches.
func S256Matches(verifier, challenge string) bool {
	return verifier != "" && subtle.ConstantTimeCompare([]byte(S256Challenge(verifier)), []byte(challenge)) == 1
}
