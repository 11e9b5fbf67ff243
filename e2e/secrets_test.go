package e2e

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/pquerna/otp"
	_ "modernc.org/sqlite"
)

// secDump returns every value of every table as text, like sqlite3's .dump.
func secDump(t *testing.T, db string) string {
	t.Helper()
	conn, err := sql.Open("sqlite", "file:"+db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tables, err := conn.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for tables.Next() {
		var n string
		_ = tables.Scan(&n)
		names = append(names, n)
	}
	tables.Close()
	var out strings.Builder
	for _, n := range names {
		rows, err := conn.Query(`SELECT * FROM "` + n + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			_ = rows.Scan(ptrs...)
			for _, v := range vals {
				switch x := v.(type) {
				case []byte:
					out.WriteString(hex.EncodeToString(x) + "|" + string(x) + "|")
				default:
					fmt.Fprintf(&out, "%v|", x)
				}
			}
			out.WriteString("\n")
		}
		rows.Close()
	}
	return out.String()
}

// secRawBytes is the database file and its WAL.
func secRawBytes(t *testing.T, db string) []byte {
	var all []byte
	for _, p := range []string{db, db + "-wal"} {
		b, err := os.ReadFile(p)
		if err == nil {
			all = append(all, b...)
		}
	}
	return all
}

// rsaEncryptionOID is the DER of the PKCS#8 rsaEncryption algorithm id:
// any unsealed RSA private key would contain it; public JWKs are JSON.
var rsaEncryptionOID = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01}

// TestSecretsAtRest: neither the file nor a dump holds a TOTP seed (base32,
// raw or hex) or a private key; swapped seed ciphertexts open for nobody;
// a wrong key stops the server with a clear message.
func TestSecretsAtRest(t *testing.T) {
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	alice := AddUser(t, s.DB, "alice", "correct horse battery")
	bob := AddUser(t, s.DB, "bob", "correct horse battery")
	CLI(t, s.DB, "", "keys", "rotate")
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	f.Login(alice)
	s.Stop()

	raw := secRawBytes(t, s.DB)
	dump := secDump(t, s.DB)
	for _, u := range []User{alice, bob} {
		b32 := u.Key.Secret()
		seed, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(b32)
		if err != nil {
			t.Fatal(err)
		}
		for name, needle := range map[string][]byte{"base32": []byte(b32), "lower base32": []byte(strings.ToLower(b32)), "raw": seed, "hex": []byte(hex.EncodeToString(seed)), "base64": []byte(base64.StdEncoding.EncodeToString(seed))} {
			if bytes.Contains(raw, needle) || strings.Contains(dump, string(needle)) {
				t.Errorf("%s seed of %s found in the database", name, u.Name)
			}
		}
	}
	if bytes.Contains(raw, rsaEncryptionOID) || strings.Contains(dump, hex.EncodeToString(rsaEncryptionOID)) {
		t.Error("an unsealed RSA private key is in the database")
	}
	if strings.Contains(dump, "PRIVATE KEY") || strings.Contains(dump, `"d":`) {
		t.Error("private key material in the dump")
	}

	// Swap the two users' seed ciphertexts: both logins must fail.
	conn, err := sql.Open("sqlite", "file:"+s.DB)
	if err != nil {
		t.Fatal(err)
	}
	var secA, secB []byte
	if err := conn.QueryRow(`SELECT secret FROM totp_credentials WHERE user_id = ?`, alice.ID).Scan(&secA); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(`SELECT secret FROM totp_credentials WHERE user_id = ?`, bob.ID).Scan(&secB); err != nil {
		t.Fatal(err)
	}
	for id, v := range map[string][]byte{alice.ID: secB, bob.ID: secA} {
		if _, err := conn.Exec(`UPDATE totp_credentials SET secret = ? WHERE user_id = ?`, v, id); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	s.Restart()
	for _, u := range []User{alice, bob} {
		f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
		if p := f.Password(u.Name, u.Password); p.Status != http.StatusSeeOther {
			t.Fatalf("password %s: %d", u.Name, p.Status)
		}
		f.Form = Hidden(f.B.Get(f.LoginURL).Body)
		p := f.TOTP(u.Code(time.Now()))
		if p.Status == http.StatusSeeOther || strings.Contains(p.Location, "code=") {
			t.Errorf("%s logged in with a swapped seed ciphertext", u.Name)
		}
	}
	s.Stop()

	// A wrong key: the server refuses to start and says why.
	wrong := filepath.Join(t.TempDir(), "wrong.key")
	secWriteKey(t, wrong)
	out, errOut, err := CLIResult(s.DB, "", "serve", "--listen", "127.0.0.1:0", "--secret-key-file", wrong)
	if err == nil || !strings.Contains(errOut, "secret key") || !strings.Contains(errOut, "--secret-key-file") {
		t.Fatalf("serve with a wrong key: err %v\n%s%s", err, out, errOut)
	}
	// A missing key file too.
	_, errOut, err = CLIResult(s.DB, "", "serve", "--listen", "127.0.0.1:0", "--secret-key-file", wrong+".missing")
	if err == nil || !strings.Contains(errOut, "secret key") {
		t.Fatalf("serve with a missing key: err %v\n%s", err, errOut)
	}
}

func secWriteKey(t *testing.T, path string) {
	t.Helper()
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSecretsRotate: after `idp secrets rotate` a running server keeps
// serving, every user still logs in, and the old key opens nothing.
func TestSecretsRotate(t *testing.T) {
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	users := []User{AddUser(t, s.DB, "ann", "correct horse battery"), AddUser(t, s.DB, "ben", "correct horse battery")}
	// cat logs in only after the restart: a second login of ann or ben in
	// the same 30-s step would be a TOTP replay.
	cat := AddUser(t, s.DB, "cat", "correct horse battery")
	oldKey, err := os.ReadFile(s.DB + ".key")
	if err != nil {
		t.Fatal(err)
	}
	newKey := filepath.Join(t.TempDir(), "new.key")
	secWriteKey(t, newKey)
	out := CLI(t, s.DB, "", "secrets", "rotate", "--new-key-file", newKey)
	if !strings.Contains(out, "Re-encrypted") {
		t.Fatalf("rotate: %s", out)
	}
	installed, _ := os.ReadFile(s.DB + ".key")
	want, _ := os.ReadFile(newKey)
	if !bytes.Equal(installed, want) {
		t.Fatal("the key file was not replaced with the new key")
	}
	// The running server (started with the old key) keeps serving.
	for _, u := range users {
		NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Login(u)
	}
	CLI(t, s.DB, "", "keys", "rotate")
	// The old key opens nothing: a server with it refuses to start.
	old := filepath.Join(t.TempDir(), "old.key")
	if err := os.WriteFile(old, oldKey, 0o600); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if _, errOut, err := CLIResult(s.DB, "", "serve", "--listen", "127.0.0.1:0", "--secret-key-file", old); err == nil || !strings.Contains(errOut, "secret key") {
		t.Fatalf("serve with the old key after rotation: %v %s", err, errOut)
	}
	// Every sealed value names the new key.
	dump := secDump(t, s.DB)
	if strings.Contains(dump, "|s1"+string(secKeyIDRaw(t, oldKey))) {
		t.Error("a value sealed with the old key remains")
	}
	if n := strings.Count(dump, "|s1"+string(secKeyIDRaw(t, want))); n < 5 {
		t.Errorf("only %d values sealed with the new key; want the 3 seeds, 2 signing keys and the settings", n)
	}
	s.Restart()
	NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Login(cat)
}

// secKeyIDRaw is the raw 8-byte key id sealed values record (op.KeyID).
func secKeyIDRaw(t *testing.T, keyFile []byte) []byte {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(keyFile)))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(append([]byte("idp secret key id\x00"), k...))
	return sum[:8]
}

// TestKeysRotate: after `idp keys rotate` on a running server (with a
// short activation delay), an ID token issued before still verifies
// through JWKS and new tokens carry the new kid once it is active.
func TestKeysRotate(t *testing.T) {
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	u1 := AddUser(t, s.DB, "kim", "correct horse battery")
	u2 := AddUser(t, s.DB, "lee", "correct horse battery")
	rp := NewRP(t, s, c)
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	tok, err := rp.Exchange(f, f.Login(u1))
	if err != nil {
		t.Fatal(err)
	}
	oldRaw := tok.Extra("id_token").(string)
	oldKid := secKid(t, oldRaw)
	out := CLI(t, s.DB, "", "keys", "rotate", "--activate-after", "2s")
	if !strings.Contains(out, "New signing key") {
		t.Fatal(out)
	}
	var newKid string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
		tok, err := rp.Exchange(f, f.Login(u2))
		if err != nil {
			t.Fatal(err)
		}
		if k := secKid(t, tok.Extra("id_token").(string)); k != oldKid {
			newKid = k
			break
		}
		time.Sleep(500 * time.Millisecond)
		u2 = AddUser(t, s.DB, fmt.Sprintf("lee%d", time.Now().UnixNano()), "correct horse battery")
	}
	if newKid == "" {
		t.Fatal("new tokens still carry the old kid 10 s after rotation")
	}
	// A fresh RP (empty key cache) verifies the old token through JWKS.
	fresh := NewRP(t, s, c)
	if _, err := fresh.Verifier.Verify(context.Background(), oldRaw); err != nil {
		t.Fatalf("old ID token no longer verifies: %v", err)
	}
	keys := NewBrowser(t, "").Get(s.URL + "/keys")
	if !strings.Contains(keys.Body, oldKid) || !strings.Contains(keys.Body, newKid) {
		t.Fatalf("JWKS lacks a kid: %s", keys.Body)
	}
}

func secKid(t *testing.T, raw string) string {
	t.Helper()
	sig, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	return sig.Signatures[0].Header.KeyID
}

// TestSecretsRotateWhileServing: a server that was running during `idp
// secrets rotate` seals what it writes next (a TOTP secret at enrollment, a
// pending enrollment secret) with the new key, even when nothing it has read
// since names that key. After a restart with the new key only, the user who
// enrolled signs in, and no value in the database opens with the old key.
func TestSecretsRotateWhileServing(t *testing.T) {
	s := StartServer(t, append(fastPolicy, "--log-level", "info")...)
	c := AddClient(t, s.DB, "app")
	eve := enrAddUserAtLogin(t, s.DB, "eve", "correct horse battery")
	fay := enrAddUserAtLogin(t, s.DB, "fay", "correct horse battery")
	oldKey, err := os.ReadFile(s.DB + ".key")
	if err != nil {
		t.Fatal(err)
	}
	newKeyFile := filepath.Join(t.TempDir(), "new.key")
	secWriteKey(t, newKeyFile)
	newKey, _ := os.ReadFile(newKeyFile)
	CLI(t, s.DB, "", "secrets", "rotate", "--new-key-file", newKeyFile)

	// Right after the rotation, through the server that was running: eve
	// enrolls, fay stops at the enrollment page with a pending secret. Eve
	// confirms with the previous step's code, so that her sign-in after the
	// restart can use the current one (a code's step is accepted once).
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	secret := enrSecret(t, enrPasswordToEnroll(t, f, eve).Body)
	if p := enrPost(f, "/login/enroll", url.Values{"code": {enrCode(t, secret, time.Now().Add(-30*time.Second))}}); p.Status != http.StatusOK {
		t.Fatalf("eve's enrollment: %d\n%s", p.Status, p.Body)
	}
	enrPasswordToEnroll(t, NewBrowser(t, "").StartFlow(s, c, AuthParams{}), fay)
	// The server also notices the new key by itself (a short timer).
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.Stderr(), "secret key changed") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(s.Stderr(), "secret key changed") {
		t.Error("the running server never logged that it switched to the new secret key")
	}
	s.Stop()

	secCheckSealedUnder(t, s.DB, newKey, oldKey)

	// DB.key now holds the new key only.
	s.Restart()
	key, err := otp.NewKeyFromURL("otpauth://totp/x:eve?secret=" + secret + "&issuer=x")
	if err != nil {
		t.Fatal(err)
	}
	eve.Key = key
	f = NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	if p := f.Password(eve.Name, eve.Password); p.Status != http.StatusSeeOther {
		t.Fatalf("eve's password after the restart: %d\n%s", p.Status, p.Body)
	}
	f.Form = Hidden(f.B.Get(f.LoginURL).Body)
	p := f.TOTP(eve.Code(time.Now()))
	if p.Status != http.StatusSeeOther {
		t.Fatalf("eve's TOTP step after the restart with the new key: %d, want 303\n%s", p.Status, p.Body)
	}
	f.CodeFrom(f.Follow(p))
}

// secSealedColumns are the columns that hold sealed values, with the
// associated data each value is bound to (op/sealer.go: aad*).
var secSealedColumns = []struct{ kind, query, aadPrefix string }{
	{"totp", `SELECT user_id, secret FROM totp_credentials`, "totp:v1:"},
	{"totp-pending", `SELECT id, pending_totp FROM auth_requests WHERE pending_totp IS NOT NULL`, "totp-pending:v1:"},
	{"signing-key", `SELECT id, private_key FROM signing_keys`, "signing-key:v1:"},
	{"setting", `SELECT name, value FROM settings WHERE name LIKE 'sealed.%'`, "setting:v1:"},
}

// secCheckSealedUnder checks every sealed value of db: it names the key of
// keyFile, opens with it, and does not open with oldKeyFile. At least one
// TOTP secret, pending secret, signing key and setting must be there.
func secCheckSealedUnder(t *testing.T, db string, keyFile, oldKeyFile []byte) {
	t.Helper()
	conn, err := sql.Open("sqlite", "file:"+db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	want, old := secKeyIDRaw(t, keyFile), secKeyIDRaw(t, oldKeyFile)
	newGCM, oldGCM := secGCM(t, keyFile), secGCM(t, oldKeyFile)
	for _, col := range secSealedColumns {
		rows, err := conn.Query(col.query)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var id string
			var v []byte
			if err := rows.Scan(&id, &v); err != nil {
				t.Fatal(err)
			}
			n++
			if len(v) < 2+8+12+16 || string(v[:2]) != "s1" {
				t.Errorf("%s %s: not a sealed value", col.kind, id)
				continue
			}
			aad := []byte(col.aadPrefix + id)
			nonce, ct := v[10:22], v[22:]
			if _, err := oldGCM.Open(nil, nonce, ct, aad); err == nil {
				t.Errorf("%s %s opens with the old key", col.kind, id)
			}
			if _, err := newGCM.Open(nil, nonce, ct, aad); err != nil {
				t.Errorf("%s %s does not open with the new key", col.kind, id)
			}
			switch {
			case bytes.Equal(v[2:10], old):
				t.Errorf("%s %s names the old key", col.kind, id)
			case !bytes.Equal(v[2:10], want):
				t.Errorf("%s %s names key %x, not the new key", col.kind, id, v[2:10])
			}
		}
		rows.Close()
		if n == 0 {
			t.Errorf("no %s value in the database to check", col.kind)
		}
	}
}

// secGCM is AES-256-GCM under the key in keyFile (base64).
func secGCM(t *testing.T, keyFile []byte) cipher.AEAD {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(keyFile)))
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return g
}
