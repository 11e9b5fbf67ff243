package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

// TestListenChanges: a change to clients or signing keys made through one
// store (one replica), or by any other writer, reaches a second store's
// listener within a second; after its connection is lost the listener
// reports everything as changed (it may have missed something) and goes
// on listening.
func TestListenChanges(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := freshDatabase(t)
	a, b := openTest(t, cfg, OpenOptions{}), openTest(t, cfg, OpenOptions{NoMigrate: true})
	got := make(chan storage.Change, 16)
	done := make(chan error, 1)
	go func() { done <- b.ListenChanges(ctx, func(c storage.Change) { got <- c }) }()
	expect := func(what string, want storage.Change) {
		t.Helper()
		deadline := time.After(2 * time.Second)
		for {
			select {
			case c := <-got:
				if c == want {
					return
				}
			case <-deadline:
				t.Fatalf("%s: no %s notification within 2 s", what, want)
			}
		}
	}
	conn := rawConn(t, cfg)
	// listening waits (bounded) until the listener's LISTEN is in place.
	listening := func() {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; {
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN idp_changes'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the listener did not LISTEN within 5 s")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	listening()
	if err := a.CreateClient(ctx, storage.Client{ID: "app", RedirectURIs: []string{"https://rp.example/cb"}, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	expect("client created on the other replica", storage.ChangeClients)
	if err := a.DeleteClient(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	expect("client deleted", storage.ChangeClients)
	k := storage.SigningKey{ID: "k1", Algorithm: "RS256", PrivateKey: []byte("sealed"), PublicJWK: []byte("{}"), CreatedAt: t0}
	if err := a.AddSigningKey(ctx, k, true, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	expect("signing key added", storage.ChangeSigningKeys)
	if _, err := conn.Exec(ctx, `UPDATE signing_keys SET expires_at = expires_at + 1`); err != nil {
		t.Fatal(err)
	}
	expect("a manual UPDATE", storage.ChangeSigningKeys)
	// Cut the listener's connection: it reconnects and reports both.
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN idp_changes' AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	expect("after the listener's connection was cut", storage.ChangeClients)
	listening()
	if err := a.CreateClient(ctx, storage.Client{ID: "app2", RedirectURIs: []string{"https://rp.example/cb"}, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	expect("a change after reconnecting", storage.ChangeClients)
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Fatalf("ListenChanges returned %v, want context.Canceled", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("ListenChanges did not return after its context ended")
	}
}
