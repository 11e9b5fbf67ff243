package e2e

import (
	"bytes"
	"encoding/base32"
	"os"
	"path/filepath"
	"testing"
)

// rrOpenWithKey counts the TOTP seeds of users that keyFile's key opens
// anywhere in raw (sealed values are "s1" + key id + nonce + ciphertext,
// bound to "totp:v1:<user id>").
func rrOpenWithKey(t *testing.T, raw, keyFile []byte, users []User) int {
	t.Helper()
	g := secGCM(t, keyFile)
	needle := append([]byte("s1"), secKeyIDRaw(t, keyFile)...)
	found := 0
	for off := 0; ; {
		i := bytes.Index(raw[off:], needle)
		if i < 0 {
			return found
		}
		i += off
		off = i + 1
		end := i + 10 + 12 + 36
		if end > len(raw) {
			continue
		}
		for _, u := range users {
			if pt, err := g.Open(nil, raw[i+10:i+22], raw[i+22:end], []byte("totp:v1:"+u.ID)); err == nil {
				seed, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(u.Key.Secret())
				if bytes.Equal(pt, seed) {
					found++
				}
			}
		}
	}
}

// TestSecretsRotateLeavesNoOldCopies: right after `idp secrets rotate` with
// a server running, neither the database file nor its write-ahead log holds
// a TOTP seed the old key opens (the WAL kept page images of the old
// ciphertexts, and deleted or replaced cells kept their bytes).
func TestSecretsRotateLeavesNoOldCopies(t *testing.T) {
	t.Parallel()
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	users := []User{AddUser(t, s.DB, "ann", "correct horse battery"), AddUser(t, s.DB, "ben", "correct horse battery")}
	NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Login(users[0])
	oldKey, err := os.ReadFile(s.DB + ".key")
	if err != nil {
		t.Fatal(err)
	}
	count := func() (db, wal int) {
		if raw, err := os.ReadFile(s.DB); err == nil {
			db = rrOpenWithKey(t, raw, oldKey, users)
		}
		if raw, err := os.ReadFile(s.DB + "-wal"); err == nil {
			wal = rrOpenWithKey(t, raw, oldKey, users)
		}
		return db, wal
	}
	if db, wal := count(); db+wal == 0 {
		t.Fatal("the check finds no seed even before the rotation: it cannot fail")
	}
	newKeyFile := filepath.Join(t.TempDir(), "new.key")
	secWriteKey(t, newKeyFile)
	CLI(t, s.DB, "", "secrets", "rotate", "--new-key-file", newKeyFile)
	if db, wal := count(); db+wal != 0 {
		t.Errorf("after the rotation the old key still opens %d seeds in idp.db and %d in idp.db-wal", db, wal)
	}
	// And the server keeps working with the new key.
	NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Login(users[1])
}
