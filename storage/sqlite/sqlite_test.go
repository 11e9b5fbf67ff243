package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
	"github.com/totp-idp/idp/storage/conformance"
)

func openTemp(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the backend-independent suite on a fresh file per subtest.
func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) storage.Store {
		return openTemp(t, filepath.Join(t.TempDir(), "idp.db"))
	})
}

var policy = storage.LockPolicy{FreeFailures: 5, BaseLock: 15 * time.Minute, MaxLock: 4 * time.Hour, HardLimit: 20}

var t0 = time.Unix(1_900_000_000, 0).UTC()

// Two stores on one file stand in for two processes: separate pools,
// separate in-process write queues, SQLite's file locks between them.
func TestTwoStoresShareFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	a := openTemp(t, path)
	b := openTemp(t, path)

	if err := a.CreateUser(ctx, storage.User{ID: "u1", Username: "alice", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	u, err := b.UserByUsername(ctx, "alice")
	if err != nil || u.ID != "u1" {
		t.Fatalf("second store does not see the first's write: %+v, %v", u, err)
	}
	if err := b.CreateUser(ctx, storage.User{ID: "u2", Username: "alice"}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("duplicate username across stores: %v", err)
	}

	const n = 100
	allowed := make(chan int, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := s.ClaimAttempt(ctx, "u1", storage.FactorPassword, t0, policy)
			if err != nil {
				t.Errorf("ClaimAttempt: %v", err)
				return
			}
			if c.Allowed {
				allowed <- c.Failures
			}
		}()
	}
	close(start)
	wg.Wait()
	close(allowed)
	seen := map[int]bool{}
	for f := range allowed {
		seen[f] = true
	}
	if len(seen) != policy.FreeFailures {
		t.Fatalf("claims across two stores: %d allowed (%v), want %d", len(seen), seen, policy.FreeFailures)
	}
	st, err := a.AttemptStates(ctx, "u1")
	if err != nil || len(st) != 1 || st[0].Failures != policy.FreeFailures {
		t.Fatalf("AttemptStates: %+v, %v", st, err)
	}
}

// TestReopenKeepsData: data, including a hard lock, survives closing the file.
func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "idp.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, storage.User{ID: "u1", Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	p := storage.LockPolicy{FreeFailures: 1, HardLimit: 2}
	for range 2 {
		if _, err := s.ClaimAttempt(ctx, "u1", storage.FactorTOTP, t0, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTemp(t, path)
	if _, err := s.UserByUsername(ctx, "alice"); err != nil {
		t.Fatalf("user lost on reopen: %v", err)
	}
	c, err := s.ClaimAttempt(ctx, "u1", storage.FactorTOTP, t0.Add(1000*time.Hour), p)
	if err != nil || c.Allowed || !c.HardLocked {
		t.Fatalf("hard lock lost on reopen: %+v, %v", c, err)
	}
}

func countMigrations(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMigrationsIdempotent: concurrent first opens, re-running and reopening
// apply each migration once; a newer schema is refused.
func TestMigrationsIdempotent(t *testing.T) {
	ctx := context.Background()
	ms, err := migrations()
	if err != nil || len(ms) == 0 || ms[0].version != 1 {
		t.Fatalf("embedded migrations: %v, %v", ms, err)
	}
	path := filepath.Join(t.TempDir(), "idp.db")

	// Several "processes" opening one fresh file at once.
	const n = 6
	stores := make([]*Store, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			stores[i], errs[i] = Open(ctx, path)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	s := stores[0]
	if got := countMigrations(t, s); got != len(ms) {
		t.Fatalf("schema_migrations has %d rows, want %d", got, len(ms))
	}
	if err := s.migrate(ctx); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	s2 := openTemp(t, path)
	if got := countMigrations(t, s2); got != len(ms) {
		t.Fatalf("schema_migrations after reopen: %d rows, want %d", got, len(ms))
	}
	if err := s2.CreateUser(ctx, storage.User{ID: "u", Username: "u"}); err != nil {
		t.Fatalf("store unusable after repeated migration: %v", err)
	}

	// A database from a newer program is refused rather than used.
	if _, err := s.db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)`); err != nil {
		t.Fatal(err)
	}
	if s3, err := Open(ctx, path); err == nil {
		s3.Close()
		t.Fatalf("Open accepted a schema newer than the program")
	}
}

// TestPathWithSpecialCharacters: '?', '&', '#', '%' and quotes in the path
// name the file literally and cannot inject DSN parameters.
func TestPathWithSpecialCharacters(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "a?b&c=d#e%41 f'g")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "x?_pragma=journal_mode(DELETE)&_txlock=deferred&mode=ro.db")
	s := openTemp(t, path)
	if err := s.CreateUser(ctx, storage.User{ID: "u1", Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the literal path: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), filepath.Base(path)) {
			t.Fatalf("stray file %q next to the database", e.Name())
		}
	}
	var mode string
	if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v: the path injected a pragma", mode, err)
	}
	s.Close()
	s = openTemp(t, path)
	if _, err := s.UserByUsername(ctx, "alice"); err != nil {
		t.Fatalf("reopen by the same path: %v", err)
	}
}

// TestOpenRejectsNonPaths: Open takes a file path, not a URI or :memory:.
func TestOpenRejectsNonPaths(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db?mode=memory", "a\x00b"} {
		if s, err := Open(context.Background(), p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

// TestPragmas checks the connection settings the DSN asks for.
func TestPragmas(t *testing.T) {
	s := openTemp(t, filepath.Join(t.TempDir(), "idp.db"))
	conn, err := s.db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for pragma, want := range map[string]string{
		"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "10000", "synchronous": "2", // FULL
		"wal_autocheckpoint": "0",
	} {
		var got string
		if err := conn.QueryRowContext(context.Background(), "PRAGMA "+pragma).Scan(&got); err != nil || got != want {
			t.Errorf("PRAGMA %s = %q (%v), want %q", pragma, got, err, want)
		}
	}
}

// TestAuditAppendOnly: the schema's triggers refuse UPDATE, and DELETE of
// anything DeleteAuditBefore has not opened for its own cutoff.
func TestAuditAppendOnly(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, filepath.Join(t.TempDir(), "idp.db"))
	if err := s.AppendAudit(ctx, storage.AuditEvent{Time: t0, Type: "x", UserID: "u"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`UPDATE audit_events SET type = 'y'`); err == nil {
		t.Errorf("UPDATE of audit_events succeeded")
	}
	if _, err := s.db.Exec(`DELETE FROM audit_events`); err == nil {
		t.Errorf("DELETE from audit_events succeeded")
	}
	// REPLACE deletes without firing delete triggers.
	if _, err := s.db.Exec(`INSERT OR REPLACE INTO audit_events (id, time, type) SELECT id, time, 'rewritten' FROM audit_events`); err == nil {
		t.Errorf("INSERT OR REPLACE rewrote an audit event")
	}
	if _, err := s.db.Exec(`REPLACE INTO audit_events (id, time, type) SELECT id, time, 'rewritten' FROM audit_events`); err == nil {
		t.Errorf("REPLACE rewrote an audit event")
	}
	if _, err := s.db.Exec(`DELETE FROM audit_retention`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`DELETE FROM audit_events`); err == nil {
		t.Errorf("DELETE from audit_events succeeded without the retention row")
	}
	if n, err := s.DeleteAuditBefore(ctx, t0); err != nil || n != 0 {
		t.Errorf("DeleteAuditBefore(t0) of an event at t0: %d, %v", n, err)
	}
	evs, err := s.ListAudit(ctx, storage.AuditFilter{})
	if err != nil || len(evs) != 1 || evs[0].Type != "x" {
		t.Fatalf("audit trail changed: %+v, %v", evs, err)
	}
}

// TestDeleteAuditBeforeInBatches: a trail larger than one batch is pruned
// completely, and the delete guard is closed again afterwards.
func TestDeleteAuditBeforeInBatches(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, filepath.Join(t.TempDir(), "idp.db"))
	const n = 2*auditDeleteBatch + 17
	tx, err := s.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := tx.Exec(`INSERT INTO audit_events (time, type) VALUES (?, 'old')`, t0.Unix()-int64(n-i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, storage.AuditEvent{Time: t0, Type: "kept"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.DeleteAuditBefore(ctx, t0)
	if err != nil || got != n {
		t.Fatalf("DeleteAuditBefore = %d, %v; want %d", got, err, n)
	}
	var cutoff int64
	if err := s.db.QueryRow(`SELECT cutoff FROM audit_retention WHERE id = 1`).Scan(&cutoff); err != nil || cutoff != 0 {
		t.Fatalf("delete guard left open: cutoff %d, %v", cutoff, err)
	}
	if _, err := s.db.Exec(`DELETE FROM audit_events`); err == nil {
		t.Errorf("DELETE from audit_events succeeded after DeleteAuditBefore")
	}
	if evs, err := s.ListAudit(ctx, storage.AuditFilter{}); err != nil || len(evs) != 1 || evs[0].Type != "kept" {
		t.Fatalf("left: %+v, %v", evs, err)
	}
}

// TestBusyRetry holds the write lock from a foreign connection and checks
// that a store without busy_timeout retries, then gives up with a wrapped
// SQLITE_BUSY.
func TestBusyRetry(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "idp.db")
	openTemp(t, path).Close() // create the schema

	dsn, err := buildDSN(path)
	if err != nil {
		t.Fatal(err)
	}
	impatient, err := openDSN(ctx, strings.Replace(dsn, "busy_timeout(10000)", "busy_timeout(0)", 1), path)
	if err != nil {
		t.Fatal(err)
	}
	defer impatient.Close()

	other, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	hold := func() *sql.Tx {
		tx, err := other.BeginTx(ctx, nil) // BEGIN IMMEDIATE: takes the write lock
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}

	// Released after 10 ms: a retry succeeds.
	tx := hold()
	go func() { time.Sleep(10 * time.Millisecond); tx.Rollback() }()
	if err := impatient.CreateUser(ctx, storage.User{ID: "u1", Username: "alice"}); err != nil {
		t.Fatalf("CreateUser while briefly locked: %v", err)
	}

	// Held throughout: a bounded number of attempts, then a busy error.
	tx = hold()
	defer tx.Rollback()
	begin := time.Now()
	err = impatient.CreateUser(ctx, storage.User{ID: "u2", Username: "bob"})
	if err == nil || !isBusy(err) || !errors.Is(err, storage.ErrBusy) || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("CreateUser while locked: %v, want a wrapped SQLITE_BUSY", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("gave up only after %v", d)
	}
	// Reads are not blocked by a writer (WAL).
	if _, err := impatient.UserByUsername(ctx, "alice"); err != nil {
		t.Fatalf("read during a foreign write transaction: %v", err)
	}
}

// TestBackgroundCheckpoint: with the automatic checkpoint off, the
// background checkpointer still moves committed pages into the database
// file, so the WAL does not grow without bound.
func TestBackgroundCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idp.db")
	s := openTemp(t, path)
	ctx := context.Background()
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if err := s.AppendAudit(ctx, storage.AuditEvent{Time: time.Unix(1_900_000_000, 0), Type: "t", Detail: strings.Repeat("x", 500)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if after, err := os.Stat(path); err == nil && after.Size() > before.Size()+50_000 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the database file did not grow: nothing was checkpointed from the WAL")
}

// TestMigrationEnrollPending: migration 0007 starts the enrollment window of
// the accounts already waiting (no confirmed authenticator) at the
// upgrade, and leaves enrolled accounts out of it.
func TestMigrationEnrollPending(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "idp.db")
	dsn, err := buildDSN(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.version >= 7 {
			break
		}
		if _, err := raw.Exec(m.sql); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if _, err := raw.Exec(`INSERT INTO schema_migrations VALUES (?, 0)`, m.version); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{
		`INSERT INTO users (id, username) VALUES ('waiting', 'waiting'), ('enrolled', 'enrolled'), ('unconfirmed', 'unconfirmed')`,
		`INSERT INTO totp_credentials (user_id, secret, confirmed) VALUES ('enrolled', x'00', 1), ('unconfirmed', x'00', 0)`,
	} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	before := time.Now().Add(-time.Second)
	s := openTemp(t, path)
	for id, waits := range map[string]bool{"waiting": true, "enrolled": false, "unconfirmed": true} {
		u, err := s.UserByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got := !u.EnrollPendingSince.IsZero(); got != waits || waits && (u.EnrollPendingSince.Before(before) || u.EnrollPendingSince.After(time.Now())) {
			t.Errorf("%s: waiting for enrollment since %v, want waiting %v from the upgrade", id, u.EnrollPendingSince, waits)
		}
	}
}

// TestSchemaCurrent: a migrated database has this program's schema; one
// that a newer program migrated further (or whose history is incomplete)
// does not, and the error names both versions.
func TestSchemaCurrent(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "idp.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SchemaCurrent(ctx); err != nil {
		t.Fatalf("fresh database: %v", err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)`); err != nil {
		t.Fatal(err)
	}
	if err := s.SchemaCurrent(ctx); err == nil || !strings.Contains(err.Error(), "999") {
		t.Fatalf("newer schema: %v", err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM schema_migrations WHERE version IN (999, 3)`); err != nil {
		t.Fatal(err)
	}
	if err := s.SchemaCurrent(ctx); err == nil {
		t.Fatal("a missing migration is current")
	}
}
