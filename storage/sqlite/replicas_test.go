package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/totp-idp/idp/storage"
	"github.com/totp-idp/idp/storage/conformance"
)

// TestReplicas runs the multi-process races on two stores that open one
// file: separate pools and in-process write queues, SQLite's file locks
// between them, as between two processes.
func TestReplicas(t *testing.T) {
	conformance.RunReplicas(t, func(t *testing.T) (storage.Store, storage.Store) {
		path := filepath.Join(t.TempDir(), "shared.db")
		return openTemp(t, path), openTemp(t, path)
	})
}
