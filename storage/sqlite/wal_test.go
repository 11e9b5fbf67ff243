package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

// TestWALBoundedUnderFlood: a steady stream of writes (an /authorize flood
// stores one row per request) does not grow the WAL for ever: past
// walTruncateFrames the checkpointer truncates it.
func TestWALBoundedUnderFlood(t *testing.T) {
	old := walTruncateFrames
	walTruncateFrames = 256 // 1 MiB
	t.Cleanup(func() { walTruncateFrames = old })
	path := filepath.Join(t.TempDir(), "idp.db")
	s := openTemp(t, path)
	ctx := context.Background()
	now := time.Now()
	pad := string(bytes.Repeat([]byte("s"), 2000))
	maxWAL, last, shrank := int64(0), int64(0), 0
	// Until the WAL has been truncated twice, within bounds: on a loaded
	// machine (CI runs other packages' tests beside this one) a
	// checkpointer tick can find the writer busy and truncate at the next.
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for i := 0; time.Now().Before(deadline) && i < 400000 && shrank < 2; i++ {
		a := storage.AuthRequest{ID: fmt.Sprintf("flood-%d", i), ClientID: "c", RedirectURI: "https://rp.example/cb",
			State: pad, Nonce: pad, ResponseType: "code", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
		if err := s.CreateAuthRequest(ctx, a); err != nil {
			t.Fatal(err)
		}
		if i%200 == 0 {
			if fi, err := os.Stat(path + "-wal"); err == nil {
				maxWAL = max(maxWAL, fi.Size())
				if fi.Size() < last {
					shrank++
				}
				last = fi.Size()
			}
		}
	}
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	// A WAL file only ever shrinks when it is truncated: without that it
	// would grow through the whole flood. Between two checkpointer ticks
	// (1 s) it holds at most one second of writes.
	took := time.Since(start).Round(time.Millisecond)
	if shrank == 0 {
		t.Errorf("the WAL never shrank during a %s flood (largest %d bytes): it is not truncated under steady writes", took, maxWAL)
	}
	t.Logf("WAL at most %d bytes during a %s flood, truncated %d times, %d at the end", maxWAL, took, shrank, fi.Size())
}

// TestCompactLeavesNoReplacedValue: after Compact neither the database file
// nor the WAL holds a replaced value (secure_delete and a truncated WAL):
// what `idp secrets rotate` relies on for "the old key opens nothing".
func TestCompactLeavesNoReplacedValue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idp.db")
	s := openTemp(t, path)
	ctx := context.Background()
	marker := []byte("OLD-SEALED-VALUE-0123456789abcdef")
	u := storage.User{ID: "u1", Username: "ann", PasswordHash: "h", CreatedAt: time.Now()}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: marker, Confirmed: true, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// Let the checkpointer copy it into the database file too.
	time.Sleep(1500 * time.Millisecond)
	if err := s.PutTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte("new-value"), Confirmed: true, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// A deleted row's bytes stay in the page's free space unless
	// secure_delete zeroes them.
	gone := []byte("DELETED-ROW-VALUE-fedcba9876543210")
	if err := s.CreateUser(ctx, storage.User{ID: "u2", Username: "bob", Name: string(gone), PasswordHash: "h", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := s.DeleteUser(ctx, "u2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, marker) {
			t.Errorf("%s still holds the replaced value after Compact", filepath.Base(f))
		}
		if bytes.Contains(b, gone) {
			t.Errorf("%s still holds the deleted value after Compact", filepath.Base(f))
		}
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() != 0 {
		t.Errorf("WAL is %d bytes after Compact, want 0", fi.Size())
	}
}
