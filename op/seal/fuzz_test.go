package seal

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// FuzzOpenSealed: opening arbitrary bytes never panics, and nothing but
// the sealed nonce and ciphertext open, and only under their row's AAD
// (a value moved to another row does not open: docs/THREAT-MODEL.md R-S2).
func FuzzOpenSealed(f *testing.F) {
	key := bytes.Repeat([]byte{9}, 32)
	// The same sealed value in every fuzz process: seal's layout with a
	// fixed nonce (seal itself draws a random one).
	gcm, err := newGCM(key)
	if err != nil {
		f.Fatal(err)
	}
	rawID, _ := hex.DecodeString(KeyID(key))
	nonce := make([]byte, gcm.NonceSize())
	sealed := append(append(append([]byte(sealVersion), rawID...), nonce...), gcm.Seal(nil, nonce, []byte("secret"), []byte("totp:v1:u1"))...)
	if pt, err := open(key, "totp:v1:u1", sealed); err != nil || string(pt) != "secret" {
		f.Fatalf("the fixed-nonce value does not open: %v", err)
	}
	f.Add(sealed, "totp:v1:u1")
	f.Add(sealed, "totp:v1:u2")
	f.Add(sealed[:len(sealed)-1], "totp:v1:u1")
	f.Add([]byte("v1"), "")
	f.Add(append(append([]byte{}, sealed[:10]...), 0), "totp:v1:u1")
	f.Fuzz(func(t *testing.T, b []byte, aad string) {
		if _, err := KeyIDOf(b); err != nil {
			return
		}
		pt, err := open(key, aad, b)
		if err != nil {
			return
		}
		// The key id in the header only chooses the key (Sealer.Open);
		// what opens must be the nonce and ciphertext sealed for this row.
		head := len(sealVersion) + keyIDLen
		if !bytes.Equal(b[head:], sealed[head:]) || aad != "totp:v1:u1" || string(pt) != "secret" {
			t.Fatalf("opened %x under %q to %q", b, aad, pt)
		}
	})
}
