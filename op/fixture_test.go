package op

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/totp-idp/idp/storage/sqlite"
)

// testStore opens a fresh SQLite store in t's temporary directory, closed
// when t ends, and a sealer with an all-zero test key.
func testStore(t testing.TB) (*sqlite.Store, *Sealer) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "idp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, err := NewSealer(make([]byte, 32), "")
	if err != nil {
		t.Fatal(err)
	}
	return st, sealer
}
