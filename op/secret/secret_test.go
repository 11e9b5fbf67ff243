package secret

import (
	"encoding/hex"
	"testing"
)

// TestNewAndHash: New gives n random bytes in base64url (never the same
// twice in practice), Hash is SHA-256 (a known vector).
func TestNewAndHash(t *testing.T) {
	a, b := New(32), New(32)
	if len(a) != 43 || a == b {
		t.Fatalf("New(32) = %q, %q", a, b)
	}
	if got := hex.EncodeToString(Hash("abc")); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("Hash(abc) = %s", got)
	}
}
