// Package seal seals the database's secrets (TOTP secrets, signing keys,
// the token key) with AES-256-GCM under the key in the secret key file,
// which never enters the database; each value is bound to its row by its
// associated data and records the key's id (docs/THREAT-MODEL.md rule 12,
// R-S2). A Sealer follows `idp secrets rotate` while the server runs.
package seal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/totp-idp/idp/storage"
)

// Sealed values (docs/THREAT-MODEL.md rule 12, R-S2) are
//
//	"s1" | key id (8 bytes) | nonce (12 bytes) | AES-256-GCM ciphertext
//
// under a 256-bit key that lives in a file, never in the database. The
// associated data binds each value to its row ("totp:v1:"+user id, …), so
// a ciphertext copied onto another row does not open.
const (
	sealVersion = "s1"
	keyIDLen    = 8
)

// ErrKey: the secret key is missing, malformed or not the one the
// database was sealed with.
var ErrKey = errors.New("secret key")

// Sealer seals and opens values with the secret key.
//
// `idp secrets rotate` re-seals the database under a new key in one
// transaction and then replaces the key file. The database decides which
// key seals: a sealer bound to its store (Bind) reads the key id that the
// database's key check value names before every Seal, and when that is not
// its own key it takes the key from its file, verified against the
// database, before it seals anything (README, Operations, "The secret
// key"). A value sealed with a key it does not know makes it re-read the
// file too (rate-limited), so opening never stops either.
type Sealer struct {
	path string

	mu         sync.Mutex
	current    []byte
	currentID  string
	known      map[string][]byte
	lastReload time.Time
	// store, once bound, is the database whose key check names the key
	// that seals; switchedAt is when current last changed to follow it.
	store      storage.Store
	switchedAt time.Time
}

// New returns a sealer for key (32 bytes), reloading from path when
// path is not empty.
func New(key []byte, path string) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("%w: need 32 bytes, have %d", ErrKey, len(key))
	}
	s := &Sealer{path: path, known: map[string][]byte{}}
	id := KeyID(key)
	s.current, s.currentID = key, id
	s.known[id] = key
	return s, nil
}

// Load reads the key file at path.
func Load(path string) (*Sealer, error) {
	key, err := ReadKeyFile(path)
	if err != nil {
		return nil, err
	}
	return New(key, path)
}

// KeyID is the identifier a sealed value records: the first 8 bytes of a
// SHA-256 over a fixed label and the key, hex-encoded.
func KeyID(key []byte) string {
	h := sha256.Sum256(append([]byte("idp secret key id\x00"), key...))
	return hex.EncodeToString(h[:keyIDLen])
}

// CurrentKeyID is the id of the key new values are sealed with.
func (s *Sealer) CurrentKeyID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.currentID
}

// Bind checks that the sealer's key is st's (CheckKey) and from then
// on lets st's key check decide which key seals.
func (s *Sealer) Bind(ctx context.Context, st storage.Store) error {
	if err := CheckKey(ctx, st, s); err != nil {
		return err
	}
	s.mu.Lock()
	s.store = st
	s.mu.Unlock()
	return nil
}

// Seal encrypts plaintext bound to aad, under the key the database uses.
func (s *Sealer) Seal(ctx context.Context, aad string, plaintext []byte) ([]byte, error) {
	key, id, err := s.sealingKey(ctx)
	if err != nil {
		return nil, err
	}
	return seal(key, id, aad, plaintext)
}

// Refresh follows a rotation without sealing anything: serve calls it on a
// timer, so an idle server switches keys too. It reports whether the
// sealing key changed.
func (s *Sealer) Refresh(ctx context.Context) (bool, error) {
	before := s.CurrentKeyID()
	_, id, err := s.sealingKey(ctx)
	return err == nil && id != before, err
}

// sealingKey returns the key to seal with: the current one while the
// database's key check names it, else the key the database names, read
// from the key file and checked against the database.
func (s *Sealer) sealingKey(ctx context.Context) ([]byte, string, error) {
	s.mu.Lock()
	st, key, id := s.store, s.current, s.currentID
	s.mu.Unlock()
	if st == nil {
		return key, id, nil
	}
	check, err := st.Setting(ctx, keyCheckSetting)
	if err != nil {
		return nil, "", fmt.Errorf("secret key check: %w", err)
	}
	dbID, err := KeyIDOf(check)
	if err != nil {
		return nil, "", fmt.Errorf("secret key check: %w", err)
	}
	if dbID == id {
		return key, id, nil
	}
	fileKey, err := ReadKeyFile(s.path)
	if err != nil {
		return nil, "", fmt.Errorf("the database is now sealed with key %s: %w", dbID, err)
	}
	fileID := KeyID(fileKey)
	if fileID != dbID {
		return nil, "", fmt.Errorf("%w: the database is now sealed with key %s but %s holds key %s; nothing is sealed until the file holds the database's key",
			ErrKey, dbID, s.path, fileID)
	}
	if _, err := open(fileKey, AADSetting(keyCheckSetting), check); err != nil {
		return nil, "", fmt.Errorf("%w: key %s in %s does not open the database's key check", ErrKey, fileID, s.path)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.known[fileID] = fileKey
	if s.currentID != fileID {
		s.current, s.currentID, s.switchedAt = fileKey, fileID, time.Now()
	}
	return s.current, s.currentID, nil
}

func seal(key []byte, id, aad string, plaintext []byte) ([]byte, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	rawID, _ := hex.DecodeString(id)
	out := make([]byte, 0, len(sealVersion)+keyIDLen+gcm.NonceSize()+len(plaintext)+gcm.Overhead())
	out = append(out, sealVersion...)
	out = append(out, rawID...)
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return gcm.Seal(out, nonce, plaintext, []byte(aad)), nil
}

// WithKey seals plaintext for aad under key, recording key's id: what
// `idp secrets rotate` writes under the new key.
func WithKey(key []byte, aad string, plaintext []byte) ([]byte, error) {
	return seal(key, KeyID(key), aad, plaintext)
}

// Open decrypts a sealed value bound to aad.
func (s *Sealer) Open(aad string, sealed []byte) ([]byte, error) {
	id, err := KeyIDOf(sealed)
	if err != nil {
		return nil, err
	}
	key := s.keyFor(id)
	if key == nil {
		return nil, fmt.Errorf("%w: value sealed with key %s, which this server does not have", ErrKey, id)
	}
	return open(key, aad, sealed)
}

// open decrypts sealed (whose key id the caller has matched) with key.
func open(key []byte, aad string, sealed []byte) ([]byte, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	rest := sealed[len(sealVersion)+keyIDLen:]
	if len(rest) < gcm.NonceSize()+gcm.Overhead() {
		return nil, errors.New("sealed value truncated")
	}
	pt, err := gcm.Open(nil, rest[:gcm.NonceSize()], rest[gcm.NonceSize():], []byte(aad))
	if err != nil {
		return nil, errors.New("sealed value does not open: wrong row or tampered")
	}
	return pt, nil
}

// KeyIDOf returns the key id recorded in a sealed value.
func KeyIDOf(sealed []byte) (string, error) {
	if len(sealed) < len(sealVersion)+keyIDLen || string(sealed[:len(sealVersion)]) != sealVersion {
		return "", errors.New("not a sealed value")
	}
	return hex.EncodeToString(sealed[len(sealVersion) : len(sealVersion)+keyIDLen]), nil
}

// keyFor returns the known key with id, re-reading the key file once a
// second at most when id is unknown. A key read this way only opens: it
// seals once the database names it (sealingKey).
func (s *Sealer) keyFor(id string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.known[id]; ok {
		return k
	}
	if s.path == "" || time.Since(s.lastReload) < time.Second {
		return nil
	}
	s.lastReload = time.Now()
	key, err := ReadKeyFile(s.path)
	if err != nil {
		return nil
	}
	s.known[KeyID(key)] = key
	if s.store == nil {
		// Unbound (no database to ask): the file is the authority.
		s.current, s.currentID = key, KeyID(key)
	}
	return s.known[id]
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// ReadKeyFile reads a secret key: 32 bytes written as base64 (what
// GenerateKeyFile writes) or hex, surrounding white space ignored. A file
// that group or others may read or write is refused: whoever reads the key
// opens every TOTP secret (docs/THREAT-MODEL.md rule 12; OWASP ASVS 5.0
// V13.3).
func ReadKeyFile(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: no key file given (--secret-key-file or IDP_SECRET_KEY_FILE)", ErrKey)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	defer f.Close()
	// fstat the opened file, so the mode checked is the one read.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%w: %s may be read or changed by other users (mode %04o); allow its owner only: chmod 600 %s", ErrKey, path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	txt := strings.TrimSpace(string(b))
	if k, err := base64.StdEncoding.DecodeString(txt); err == nil && len(k) == 32 {
		return k, nil
	}
	if k, err := hex.DecodeString(txt); err == nil && len(k) == 32 {
		return k, nil
	}
	return nil, fmt.Errorf("%w: %s must hold 32 random bytes as base64 or hex (create one with: head -c 32 /dev/urandom | base64 > %s)", ErrKey, path, path)
}

// GenerateKeyFile writes a new random key to path with mode 0600; it
// refuses to overwrite an existing file.
func GenerateKeyFile(path string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// AAD builders: one place names what each sealed value is bound to.
func AADTOTP(userID string) string           { return "totp:v1:" + userID }
func AADPendingTOTP(authReqID string) string { return "totp-pending:v1:" + authReqID }
func AADSigningKey(kid string) string        { return "signing-key:v1:" + kid }
func AADSetting(name string) string          { return "setting:v1:" + name }

// AADMail binds a sealed mail body to its outbox row (op/mail).
func AADMail(id string) string { return "mail:v1:" + id }

// AADFor is the associated data of a sealed value of kind for id.
func AADFor(kind storage.SecretKind, id string) (string, error) {
	switch kind {
	case storage.SecretTOTP:
		return AADTOTP(id), nil
	case storage.SecretPendingTOTP:
		return AADPendingTOTP(id), nil
	case storage.SecretSigningKey:
		return AADSigningKey(id), nil
	case storage.SecretSetting:
		return AADSetting(id), nil
	case storage.SecretMail:
		return AADMail(id), nil
	}
	return "", fmt.Errorf("unknown secret kind %q", kind)
}

// keyCheckSetting holds a value sealed with the database's secret key, so
// a process started with another key refuses to run instead of failing
// on the first login.
const keyCheckSetting = storage.SealedSettingPrefix + "key_check"

// CheckKey verifies that sealer's key is the database's (recording
// it on first use) and fails with a clear message otherwise.
func CheckKey(ctx context.Context, st storage.Store, sealer *Sealer) error {
	probe, err := sealer.Seal(ctx, AADSetting(keyCheckSetting), []byte("idp key check"))
	if err != nil {
		return err
	}
	stored, err := st.PutSettingIfAbsent(ctx, keyCheckSetting, probe)
	if err != nil {
		return fmt.Errorf("secret key check: %w", err)
	}
	if _, err := sealer.Open(AADSetting(keyCheckSetting), stored); err != nil {
		id, _ := KeyIDOf(stored)
		return fmt.Errorf("%w: the database was sealed with key %s but the key file holds key %s; start with the right --secret-key-file", ErrKey, id, sealer.CurrentKeyID())
	}
	return nil
}
