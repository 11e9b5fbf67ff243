//go:build unix

package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/totp-idp/idp/storage"
)

// TestNewFilesPrivate: the database and the -wal and -shm files SQLite
// creates beside it are 0600 even under a umask of 0; an existing file
// keeps its mode.
func TestNewFilesPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "idp.db")
	old := syscall.Umask(0)
	s, err := Open(context.Background(), path)
	if err == nil {
		err = s.CreateUser(context.Background(), storage.User{ID: "u1", Username: "alice"})
	}
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", filepath.Base(p), m)
		}
	}
	existing := filepath.Join(dir, "existing.db")
	if err := os.WriteFile(existing, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	openTemp(t, existing)
	if fi, _ := os.Stat(existing); fi.Mode().Perm() != 0o640 {
		t.Errorf("an existing database's mode changed to %04o", fi.Mode().Perm())
	}
}
