package op

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/admin"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
	"github.com/totp-idp/idp/storage/sqlite"
)

// sealerFixture is a database with a bound sealer on a key file, as a
// running server has them.
type sealerFixture struct {
	st      *sqlite.Store
	sealer  *seal.Sealer
	keyFile string
	userID  string
}

func newSealerFixture(t *testing.T) *sealerFixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "idp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &sealerFixture{st: st, keyFile: filepath.Join(dir, "idp.db.key"), userID: "u1"}
	writeTestKey(t, f.keyFile, randomKey(t))
	if f.sealer, err = seal.Load(f.keyFile); err != nil {
		t.Fatal(err)
	}
	if err := f.sealer.Bind(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(ctx, storage.User{ID: f.userID, Username: "ann"}); err != nil {
		t.Fatal(err)
	}
	return f
}

func randomKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func writeTestKey(t *testing.T, path string, key []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// rotate does what `idp secrets rotate` does: re-seal the database under a
// new key, then replace the key file.
func (f *sealerFixture) rotate(t *testing.T) []byte {
	t.Helper()
	current, err := seal.Load(f.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	next := randomKey(t)
	if _, err := (&admin.Admin{Store: f.st, Sealer: current}).RotateSecrets(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	writeTestKey(t, f.keyFile, next)
	return next
}

func (f *sealerFixture) putTOTP(t *testing.T, sealed []byte) {
	t.Helper()
	if err := f.st.PutTOTP(context.Background(), storage.TOTPCredential{UserID: f.userID, Secret: sealed, Confirmed: true}); err != nil {
		t.Fatal(err)
	}
}

func (f *sealerFixture) totpKeyID(t *testing.T) string {
	t.Helper()
	c, err := f.st.TOTPByUser(context.Background(), f.userID)
	if err != nil {
		t.Fatal(err)
	}
	id, err := seal.KeyIDOf(c.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestSealFollowsRotation: after a rotation the next Seal uses the new key,
// although the sealer has opened nothing sealed with it.
func TestSealFollowsRotation(t *testing.T) {
	ctx := context.Background()
	f := newSealerFixture(t)
	next := f.rotate(t)
	sealed, err := f.sealer.Seal(ctx, seal.AADTOTP(f.userID), []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := seal.KeyIDOf(sealed); id != seal.KeyID(next) {
		t.Fatalf("sealed with key %s after the rotation to %s", id, seal.KeyID(next))
	}
	if f.sealer.CurrentKeyID() != seal.KeyID(next) || f.sealer.SwitchedAt().IsZero() {
		t.Fatalf("current key %s, switched at %v", f.sealer.CurrentKeyID(), f.sealer.SwitchedAt())
	}
	only, _ := seal.New(next, "")
	if _, err := only.Open(seal.AADTOTP(f.userID), sealed); err != nil {
		t.Fatalf("the new key alone does not open it: %v", err)
	}
}

// TestSealRefusesKeyFileNotTheDatabases: when the database names a key
// that the key file does not hold, nothing is sealed (with either key).
func TestSealRefusesKeyFileNotTheDatabases(t *testing.T) {
	ctx := context.Background()
	f := newSealerFixture(t)
	f.rotate(t)
	writeTestKey(t, f.keyFile, randomKey(t)) // an operator's mistake
	if _, err := f.sealer.Seal(ctx, seal.AADTOTP(f.userID), []byte("seed")); !errors.Is(err, seal.ErrKey) {
		t.Fatalf("Seal with a key file the database does not use: %v, want seal.ErrKey", err)
	}
	if changed, err := f.sealer.Refresh(ctx); changed || err == nil {
		t.Fatalf("Refresh: changed %v, err %v", changed, err)
	}
}

// TestResealStale: a value sealed with the old key just before the
// rotation and written just after it is re-sealed under the new key; a
// sweep does nothing while the database names a key the sealer does not
// seal with; after ForgetOldKeys only the current key remains.
func TestResealStale(t *testing.T) {
	ctx := context.Background()
	f := newSealerFixture(t)
	oldID := f.sealer.CurrentKeyID()
	early, err := f.sealer.Seal(ctx, seal.AADTOTP(f.userID), []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	next := f.rotate(t)
	f.putTOTP(t, early) // the request's write lands after the rotation
	if n, err := f.sealer.ResealStale(ctx, f.st); n != 0 || err != nil {
		t.Fatalf("sweep before the sealer knows the new key: %d, %v", n, err)
	}
	if changed, err := f.sealer.Refresh(ctx); !changed || err != nil {
		t.Fatalf("Refresh after the rotation: changed %v, err %v", changed, err)
	}
	n, err := f.sealer.ResealStale(ctx, f.st)
	if n != 1 || err != nil {
		t.Fatalf("sweep: %d, %v; want the one stale value", n, err)
	}
	if id := f.totpKeyID(t); id != seal.KeyID(next) {
		t.Fatalf("after the sweep the secret names %s, want %s", id, seal.KeyID(next))
	}
	c, _ := f.st.TOTPByUser(ctx, f.userID)
	only, _ := seal.New(next, "")
	if pt, err := only.Open(seal.AADTOTP(f.userID), c.Secret); err != nil || string(pt) != "seed" {
		t.Fatalf("re-sealed value: %q, %v", pt, err)
	}
	if n, err := f.sealer.ResealStale(ctx, f.st); n != 0 || err != nil {
		t.Fatalf("second sweep: %d, %v", n, err)
	}

	// A second rotation the sealer has not followed yet: a straggler of
	// the first key is left alone rather than sealed into a key the
	// database no longer uses.
	f.rotate(t)
	f.putTOTP(t, early)
	if _, err := f.sealer.ResealStale(ctx, f.st); !errors.Is(err, seal.ErrDatabaseKeyMoved) {
		t.Fatalf("sweep behind the database: %v, want seal.ErrDatabaseKeyMoved", err)
	}
	if id := f.totpKeyID(t); id != oldID {
		t.Fatalf("a refused sweep changed the value to %s", id)
	}

	f.sealer.ForgetOldKeys()
	if _, err := f.sealer.Open(seal.AADTOTP(f.userID), early); err == nil {
		t.Fatal("the old key still opens after ForgetOldKeys")
	}
}

// TestWatchSecretKeyFollowsIdle: the watcher switches an idle server's key
// within a few intervals.
func TestWatchSecretKeyFollowsIdle(t *testing.T) {
	f := newSealerFixture(t)
	s := &Server{cfg: Config{Sealer: f.sealer}, store: f.st, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.WatchSecretKey(ctx)
	next := f.rotate(t)
	deadline := time.Now().Add(3 * keyWatchInterval)
	for f.sealer.CurrentKeyID() != seal.KeyID(next) {
		if time.Now().After(deadline) {
			t.Fatalf("still sealing with %s %s after the rotation", f.sealer.CurrentKeyID(), 3*keyWatchInterval)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReadKeyFileRefusesLooseMode: a key file that group or others may
// read or write is refused with the command that fixes it.
func TestReadKeyFileRefusesLooseMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits")
	}
	path := filepath.Join(t.TempDir(), "k")
	writeTestKey(t, path, randomKey(t))
	if _, err := seal.ReadKeyFile(path); err != nil {
		t.Fatalf("mode 0600: %v", err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o620, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := seal.ReadKeyFile(path)
		if !errors.Is(err, seal.ErrKey) || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
}
