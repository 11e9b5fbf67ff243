package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/totp-idp/idp/storage"
	"github.com/totp-idp/idp/storage/conformance"
)

// The server the tests run against: a URL or keyword/value string as Open
// takes, for a role that may CREATE DATABASE. Every test creates its own
// database on it and drops it at the end.
const (
	envURL      = "IDP_TEST_POSTGRES_URL"
	envRequired = "IDP_TEST_POSTGRES_REQUIRED" // "1": fail instead of skipping without a server
)

// serverConfig is the test server's configuration, or skips the test.
func serverConfig(t testing.TB) *pgxpool.Config {
	t.Helper()
	url := os.Getenv(envURL)
	if url == "" {
		if os.Getenv(envRequired) == "1" {
			t.Fatalf("%s is not set but %s=1: these tests need a PostgreSQL server", envURL, envRequired)
		}
		t.Skipf("no PostgreSQL server to test against: set %s (for example postgres:///postgres?host=/run/postgresql) "+
			"to a server where the user may create databases; %s=1 turns this skip into a failure", envURL, envRequired)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("%s: %v", envURL, err)
	}
	return cfg
}

// freshDatabase creates an empty database idp_test_<random> on the test
// server, drops it (WITH (FORCE): whatever still connects) when t ends, and
// returns the configuration for it: the server's with the database
// replaced.
func freshDatabase(t testing.TB) *pgxpool.Config {
	t.Helper()
	cfg := serverConfig(t)
	ctx := context.Background()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "idp_test_" + hex.EncodeToString(b[:])
	ident := pgx.Identifier{name}.Sanitize()
	admin := func(sql string) error {
		conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig.Copy())
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := admin(`CREATE DATABASE ` + ident); err != nil {
		t.Fatalf("create the test database: %v", err)
	}
	t.Cleanup(func() {
		if err := admin(`DROP DATABASE IF EXISTS ` + ident + ` WITH (FORCE)`); err != nil {
			t.Errorf("drop the test database %s: %v", name, err)
		}
	})
	db := cfg.Copy()
	db.ConnConfig.Database = name
	return db
}

// openTest opens a store on cfg (a copy) and closes it when t ends.
func openTest(t testing.TB, cfg *pgxpool.Config, o OpenOptions) *Store {
	t.Helper()
	s, err := openConfig(context.Background(), cfg.Copy(), o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawConn is a connection of its own to the test database, outside any
// store (another process's, or an operator's psql).
func rawConn(t testing.TB, cfg *pgxpool.Config) *pgx.Conn {
	t.Helper()
	conn, err := pgx.ConnectConfig(context.Background(), cfg.ConnConfig.Copy())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestConformance runs the backend-independent suite on a fresh database
// per subtest.
func TestConformance(t *testing.T) {
	serverConfig(t) // skip once, not in every subtest
	conformance.Run(t, func(t *testing.T) storage.Store {
		return openTest(t, freshDatabase(t), OpenOptions{})
	})
}

// TestReplicas runs the multi-process races on two stores (two pools) on
// one database, standing in for two replicas.
func TestReplicas(t *testing.T) {
	serverConfig(t)
	conformance.RunReplicas(t, func(t *testing.T) (storage.Store, storage.Store) {
		cfg := freshDatabase(t)
		return openTest(t, cfg, OpenOptions{}), openTest(t, cfg, OpenOptions{NoMigrate: true})
	})
}

var policy = storage.LockPolicy{FreeFailures: 5, BaseLock: 15 * time.Minute, MaxLock: 4 * time.Hour, HardLimit: 20}

var t0 = time.Unix(1_900_000_000, 0).UTC()

func countMigrations(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMigrationsConcurrent: several Opens racing on an empty database all
// succeed and apply each migration once (the advisory lock queues them);
// migrating again and reopening change nothing; a newer schema is refused,
// with or without NoMigrate.
func TestMigrationsConcurrent(t *testing.T) {
	ctx := context.Background()
	ms, err := migrations()
	if err != nil || len(ms) == 0 || ms[0].version != 1 {
		t.Fatalf("embedded migrations: %v, %v", ms, err)
	}
	cfg := freshDatabase(t)
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
			stores[i], errs[i] = openConfig(ctx, cfg.Copy(), OpenOptions{})
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
	conn := rawConn(t, cfg)
	if got := countMigrations(t, conn); got != len(ms) {
		t.Fatalf("schema_migrations has %d rows, want %d", got, len(ms))
	}
	if err := stores[0].Migrate(ctx); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	s2 := openTest(t, cfg, OpenOptions{})
	if got := countMigrations(t, conn); got != len(ms) {
		t.Fatalf("schema_migrations after reopen: %d rows, want %d", got, len(ms))
	}
	if err := s2.CreateUser(ctx, storage.User{ID: "u", Username: "u"}); err != nil {
		t.Fatalf("store unusable after repeated migration: %v", err)
	}

	// A database from a newer program is refused rather than used.
	if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)`); err != nil {
		t.Fatal(err)
	}
	for _, o := range []OpenOptions{{}, {NoMigrate: true}} {
		s3, err := openConfig(ctx, cfg.Copy(), o)
		if err == nil {
			s3.Close()
			t.Fatalf("Open(%+v) accepted a schema newer than the program", o)
		}
		if !strings.Contains(err.Error(), "9999") {
			t.Fatalf("Open(%+v) of a newer schema: %v; want the version found named", o, err)
		}
	}
}

// withMigration makes the store see one more migration than it embeds, as
// the next release would.
func withMigration(t *testing.T, name, sql string) {
	t.Helper()
	files := fstest.MapFS{}
	err := fs.WalkDir(embeddedMigrations, "migrations", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(embeddedMigrations, p)
		files[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	files["migrations/"+name] = &fstest.MapFile{Data: []byte(sql)}
	old := migrationFS
	migrationFS = files
	t.Cleanup(func() { migrationFS = old })
}

// TestNoMigrate: with NoMigrate, Open refuses a schema that is not current,
// naming the version found and the one wanted, and changes nothing; Open
// without it brings the schema up to date once.
func TestNoMigrate(t *testing.T) {
	ctx := context.Background()
	cfg := freshDatabase(t)
	ms, _ := migrations()
	latest := ms[len(ms)-1].version

	// An empty database.
	_, err := openConfig(ctx, cfg.Copy(), OpenOptions{NoMigrate: true})
	want := fmt.Sprintf("schema is at version 0, this program needs version %d", latest)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("NoMigrate on an empty database: %v; want %q", err, want)
	}
	conn := rawConn(t, cfg)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('users') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Fatalf("NoMigrate created the schema: %v, %v", exists, err)
	}

	// Current: opens.
	openTest(t, cfg, OpenOptions{})
	s := openTest(t, cfg, OpenOptions{NoMigrate: true})
	if err := s.CreateUser(ctx, storage.User{ID: "u1", Username: "alice"}); err != nil {
		t.Fatal(err)
	}

	// The next release's schema: this database is now old.
	next := fmt.Sprintf("%04d_next.sql", latest+1)
	withMigration(t, next, `ALTER TABLE users ADD COLUMN next_column TEXT NOT NULL DEFAULT 'x';`)
	_, err = openConfig(ctx, cfg.Copy(), OpenOptions{NoMigrate: true})
	want = fmt.Sprintf("schema is at version %d, this program needs version %d (not applied: %s)", latest, latest+1, next)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("NoMigrate on an old schema: %v; want %q", err, want)
	}
	openTest(t, cfg, OpenOptions{})
	openTest(t, cfg, OpenOptions{NoMigrate: true})
	if got := countMigrations(t, conn); got != latest+1 {
		t.Fatalf("schema_migrations has %d rows after the upgrade, want %d", got, latest+1)
	}
	var col string
	if err := conn.QueryRow(ctx, `SELECT next_column FROM users WHERE id = 'u1'`).Scan(&col); err != nil || col != "x" {
		t.Fatalf("the new migration did not run: %q, %v", col, err)
	}
}

// TestOpenConnectionStrings: Open takes a URL and a keyword/value string
// alike (pgxpool.ParseConfig), and refuses what it cannot parse without
// echoing a password.
func TestOpenConnectionStrings(t *testing.T) {
	ctx := context.Background()
	cfg := freshDatabase(t)
	cc := cfg.ConnConfig
	quote := func(v string) string { return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'" }
	kv := fmt.Sprintf("host=%s port=%d user=%s dbname=%s", quote(cc.Host), cc.Port, quote(cc.User), quote(cc.Database))
	if cc.Password != "" {
		kv += " password=" + quote(cc.Password)
	}
	s, err := Open(ctx, kv)
	if err != nil {
		t.Fatalf("Open(keyword/value): %v", err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, "postgres://u:sekrit@[::1"); err == nil || strings.Contains(err.Error(), "sekrit") {
		t.Fatalf("Open of a malformed URL: %v", err)
	}
}

// TestTransactionSettings: every read-write transaction runs at READ
// COMMITTED with its own lock and statement timeouts, whatever the
// connection's defaults.
func TestTransactionSettings(t *testing.T) {
	cfg := freshDatabase(t)
	cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = "serializable"
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = "0"
	s := openTest(t, cfg, OpenOptions{})
	got := map[string]string{}
	err := s.write(context.Background(), func(tx *txn) error {
		for _, name := range []string{"transaction_isolation", "lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout"} {
			var v string
			if err := tx.queryRow(`SELECT current_setting($1)`, name).Scan(&v); err != nil {
				return err
			}
			got[name] = v
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"transaction_isolation": "read committed", "lock_timeout": "2s", "statement_timeout": "5s",
		"idle_in_transaction_session_timeout": "10s"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q in a transaction, want %q", k, got[k], v)
		}
	}
}

// TestBusyRowLock: a counter row held by another transaction (a stuck
// replica) makes a claim wait, and past lock_timeout fail with ErrBusy
// after a bounded time, changing nothing; held briefly, the claim goes
// through.
func TestBusyRowLock(t *testing.T) {
	ctx := context.Background()
	cfg := freshDatabase(t)
	s := openTest(t, cfg, OpenOptions{})
	if err := s.CreateUser(ctx, storage.User{ID: "u1", Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimAttempt(ctx, "u1", storage.FactorPassword, t0, policy); err != nil {
		t.Fatal(err)
	}
	other := rawConn(t, cfg)
	hold := func() pgx.Tx {
		tx, err := other.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM attempts WHERE user_id = 'u1' FOR UPDATE`); err != nil {
			t.Fatal(err)
		}
		return tx
	}

	tx := hold()
	released := make(chan struct{})
	go func() { time.Sleep(100 * time.Millisecond); tx.Rollback(ctx); close(released) }()
	c, err := s.ClaimAttempt(ctx, "u1", storage.FactorPassword, t0, policy)
	if err != nil || !c.Allowed || c.Failures != 2 {
		t.Fatalf("claim while briefly locked: %+v, %v", c, err)
	}
	<-released // other is free again

	tx = hold()
	defer tx.Rollback(ctx)
	begin := time.Now()
	_, err = s.ClaimAttempt(ctx, "u1", storage.FactorPassword, t0, policy)
	d := time.Since(begin)
	if !errors.Is(err, storage.ErrBusy) || pgCode(err) != "55P03" {
		t.Fatalf("claim while locked: %v, want ErrBusy from a lock timeout", err)
	}
	if d < 2*time.Second || d > 4*time.Second {
		t.Fatalf("gave up after %v, want lock_timeout (2 s) and little more", d)
	}
	tx.Rollback(ctx)
	st, err := s.AttemptStates(ctx, "u1")
	if err != nil || len(st) != 1 || st[0].Failures != 2 {
		t.Fatalf("a busy claim changed the counter: %+v, %v", st, err)
	}
}

// TestRetry: transient failures are retried with backoff and then reported
// as ErrBusy within the budget; other errors are not retried; a restart
// runs again at once.
func TestRetry(t *testing.T) {
	s := &Store{}
	ctx := context.Background()
	for _, code := range []string{"40001", "40P01", "55P03", "57P03", "08006"} {
		calls := 0
		err := s.run(ctx, time.Second, func(context.Context) error {
			calls++
			if calls < 3 {
				return &pgconn.PgError{Code: code}
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Errorf("%s twice, then success: %v after %d calls", code, err, calls)
		}
	}
	calls := 0
	begin := time.Now()
	err := s.run(ctx, time.Second, func(context.Context) error { calls++; return &pgconn.PgError{Code: "40P01"} })
	if !errors.Is(err, storage.ErrBusy) || calls != retryAttempts || time.Since(begin) > time.Second {
		t.Errorf("a deadlock every time: %v after %d calls and %v", mapErr("x", err), calls, time.Since(begin))
	}
	calls = 0
	err = s.run(ctx, time.Second, func(context.Context) error { calls++; return &pgconn.PgError{Code: "23505"} })
	if !errors.Is(mapErr("x", err), storage.ErrConflict) || calls != 1 {
		t.Errorf("a unique violation: %v after %d calls", err, calls)
	}
	calls = 0
	err = s.run(ctx, time.Second, func(context.Context) error {
		if calls++; calls <= maxRestarts {
			return errRestart
		}
		return nil
	})
	if err != nil || calls != maxRestarts+1 {
		t.Errorf("restarts: %v after %d calls", err, calls)
	}
	err = s.run(ctx, time.Second, func(context.Context) error { return errRestart })
	if !errors.Is(err, storage.ErrBusy) {
		t.Errorf("endless restarts: %v", err)
	}
	if err := mapErr("x", &commitUnknownError{io.ErrUnexpectedEOF}); errors.Is(err, storage.ErrBusy) {
		t.Errorf("an unknown commit outcome reads as busy (nothing changed): %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := mapErr("x", s.run(cctx, time.Second, func(ctx context.Context) error { return ctx.Err() })); errors.Is(err, storage.ErrBusy) ||
		!errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled caller: %v", err)
	}
}

// proxy forwards TCP connections to the test server; stop makes the
// server look stopped (connections reset, new ones refused), hang makes
// it look hung (connections accepted, nothing answered).
type proxy struct {
	network, address string
	addr             string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	hung  bool
}

func startProxy(t *testing.T, cfg *pgxpool.Config) *proxy {
	t.Helper()
	network, address := pgconn.NetworkAddress(cfg.ConnConfig.Host, cfg.ConnConfig.Port)
	p := &proxy{network: network, address: address}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			hung := p.hung
			p.mu.Unlock()
			if hung {
				continue // accepted, never answered
			}
			go func() {
				s, err := net.Dial(p.network, p.address)
				if err != nil {
					c.Close()
					return
				}
				p.mu.Lock()
				p.conns = append(p.conns, s)
				p.mu.Unlock()
				go func() { io.Copy(s, c); s.Close() }()
				io.Copy(c, s)
				c.Close()
			}()
		}
	}()
}

// stop closes the listener and every connection.
func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// restart listens again on the same address.
func (p *proxy) restart(t *testing.T, hung bool) {
	t.Helper()
	p.stop()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.hung = hung
	p.mu.Unlock()
	p.serve(ln)
}

// TestServerDown: a server that stops gives ErrBusy-wrapped errors within a
// bounded time, never a panic or a hang; once it is back the store works
// again. A server that hangs gives ErrBusy once the attempt's deadline
// passes.
func TestServerDown(t *testing.T) {
	ctx := context.Background()
	cfg := freshDatabase(t)
	direct := openTest(t, cfg, OpenOptions{})
	if err := direct.CreateUser(ctx, storage.User{ID: "u1", Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, cfg)
	host, port, _ := net.SplitHostPort(p.addr)
	portN, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	via := cfg.Copy()
	via.ConnConfig.Host = host
	via.ConnConfig.Port = uint16(portN)
	via.ConnConfig.Fallbacks = nil
	via.ConnConfig.TLSConfig = nil // plain TCP to the proxy (a socket server needs none)
	s := openTest(t, via, OpenOptions{NoMigrate: true})
	if _, err := s.UserByID(ctx, "u1"); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}

	ops := map[string]func() error{
		"UserByID":     func() error { _, err := s.UserByID(ctx, "u1"); return err },
		"ClaimAttempt": func() error { _, err := s.ClaimAttempt(ctx, "u1", storage.FactorPassword, t0, policy); return err },
		"CreateUser":   func() error { return s.CreateUser(ctx, storage.User{ID: "u2", Username: "bob"}) },
		"Ping":         func() error { return s.Ping(ctx) },
		"GC":           func() error { _, err := s.GC(ctx, t0); return err },
	}
	check := func(state string, bound time.Duration) {
		t.Helper()
		for name, op := range ops {
			begin := time.Now()
			err := op()
			d := time.Since(begin)
			if !errors.Is(err, storage.ErrBusy) || d > bound {
				t.Errorf("%s with the server %s: %v after %v; want ErrBusy within %v", name, state, err, d, bound)
			}
			t.Logf("%s with the server %s: after %v: %v", name, state, d.Round(time.Millisecond), err)
		}
	}

	p.stop()
	check("stopped", time.Second)

	p.restart(t, false)
	if _, err := s.ClaimAttempt(ctx, "u1", storage.FactorPassword, t0, policy); err != nil {
		t.Fatalf("ClaimAttempt once the server is back: %v", err)
	}

	old := attemptTimeout
	attemptTimeout = 300 * time.Millisecond
	t.Cleanup(func() { attemptTimeout = old })
	p.restart(t, true)
	check("hung", 2*time.Second)
	p.restart(t, false)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping once the server answers again: %v", err)
	}
	// Nothing was done meanwhile: the one claim made while the server was
	// up is the only one counted, and bob was never created.
	if st, err := direct.AttemptStates(ctx, "u1"); err != nil || len(st) != 1 || st[0].Failures != 1 {
		t.Fatalf("counter after the outages: %+v, %v", st, err)
	}
	if _, err := direct.UserByID(ctx, "u2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a user created while the server was down: %v", err)
	}
}

// TestGCOneReplicaAtATime: GC and audit pruning do nothing while another
// replica holds their advisory lock, and their work once it is released.
func TestGCOneReplicaAtATime(t *testing.T) {
	ctx := context.Background()
	cfg := freshDatabase(t)
	s := openTest(t, cfg, OpenOptions{})
	a := storage.AuthRequest{ID: "ar-old", ClientID: "c", CreatedAt: t0.Add(-3 * time.Hour), ExpiresAt: t0.Add(-2 * time.Hour)}
	if err := s.CreateAuthRequest(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, storage.AuditEvent{Time: t0.Add(-time.Hour), Type: "old"}); err != nil {
		t.Fatal(err)
	}
	other := rawConn(t, cfg)
	for _, key := range []int64{gcLock, auditPruneLock} {
		if _, err := other.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.GC(ctx, t0); err != nil || n != 0 {
		t.Fatalf("GC while another replica collects: %d, %v; want 0", n, err)
	}
	if n, err := s.DeleteAuditBefore(ctx, t0); err != nil || n != 0 {
		t.Fatalf("DeleteAuditBefore while another replica prunes: %d, %v; want 0", n, err)
	}
	for _, key := range []int64{gcLock, auditPruneLock} {
		if _, err := other.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.GC(ctx, t0); err != nil || n != 1 {
		t.Fatalf("GC: %d, %v; want 1", n, err)
	}
	if n, err := s.DeleteAuditBefore(ctx, t0); err != nil || n != 1 {
		t.Fatalf("DeleteAuditBefore: %d, %v; want 1", n, err)
	}
}

// TestGCKeepsClaimedCounter: a counter that GC would forget but that a claim
// holds is re-checked on the claim's version and kept; and a claim whose
// counter GC deleted in between counts on a new one.
func TestGCKeepsClaimedCounter(t *testing.T) {
	ctx := context.Background()
	cfg := freshDatabase(t)
	s := openTest(t, cfg, OpenOptions{})
	p := storage.LockPolicy{FreeFailures: 3, BaseLock: time.Minute, HardLimit: 6, Decay: time.Hour}
	if _, err := s.ClaimUnknownAttempt(ctx, "k", t0, p); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(2 * time.Hour) // the failure has decayed: forget_at has passed
	other := rawConn(t, cfg)
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM unknown_attempts WHERE key = 'k' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.GC(ctx, later); done <- err }()
	time.Sleep(200 * time.Millisecond) // GC waits for the row
	// The "claim" moves forget_at past later and commits; GC re-checks.
	if _, err := tx.Exec(ctx, `UPDATE unknown_attempts SET failures = 1, forget_at = $1 WHERE key = 'k'`, later.Add(time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var n int
	if err := other.QueryRow(ctx, `SELECT COUNT(*) FROM unknown_attempts WHERE key = 'k'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("GC deleted a counter changed under it: %d rows, %v", n, err)
	}

	// GC deletes the counter while a claim waits for its row lock (after
	// the claim's insert found the row there): the claim finds it gone
	// and counts on a new one; it must not write into nothing.
	tx, err = other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM unknown_attempts WHERE key = 'k' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	claimed := make(chan storage.AttemptClaim, 1)
	go func() {
		c, err := s.ClaimUnknownAttempt(ctx, "k", later, p)
		if err != nil {
			t.Error(err)
		}
		claimed <- c
	}()
	time.Sleep(200 * time.Millisecond) // the claim waits in SELECT … FOR UPDATE
	if _, err := tx.Exec(ctx, `DELETE FROM unknown_attempts WHERE key = 'k'`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if c := <-claimed; !c.Allowed || c.Failures != 1 {
		t.Fatalf("claim on a counter deleted under it: %+v", c)
	}
	var failures int
	if err := other.QueryRow(ctx, `SELECT failures FROM unknown_attempts WHERE key = 'k'`).Scan(&failures); err != nil || failures != 1 {
		t.Fatalf("the claim was not counted: %d, %v", failures, err)
	}
}

// TestReopenKeepsData: data, including a hard lock, survives closing the
// pool.
func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	cfg := freshDatabase(t)
	s := openTest(t, cfg, OpenOptions{})
	if err := s.CreateUser(ctx, storage.User{ID: "u1", Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	p := storage.LockPolicy{FreeFailures: 1, HardLimit: 2}
	for range 2 {
		if _, err := s.ClaimAttempt(ctx, "u1", storage.FactorTOTP, t0, p); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = openTest(t, cfg, OpenOptions{})
	c, err := s.ClaimAttempt(ctx, "u1", storage.FactorTOTP, t0.Add(1000*time.Hour), p)
	if err != nil || c.Allowed || !c.HardLocked {
		t.Fatalf("hard lock lost on reopen: %+v, %v", c, err)
	}
}

// TestAuditAppendOnly: the schema's triggers refuse UPDATE, the UPDATE of
// an upsert, TRUNCATE, and DELETE of anything DeleteAuditBefore has not
// opened for its own cutoff; an insert cannot choose an id.
func TestAuditAppendOnly(t *testing.T) {
	ctx := context.Background()
	cfg := freshDatabase(t)
	s := openTest(t, cfg, OpenOptions{})
	if err := s.AppendAudit(ctx, storage.AuditEvent{Time: t0, Type: "x", UserID: "u"}); err != nil {
		t.Fatal(err)
	}
	db := rawConn(t, cfg)
	for _, q := range []string{
		`UPDATE audit_events SET type = 'y'`,
		`DELETE FROM audit_events`,
		`TRUNCATE audit_events`,
		`INSERT INTO audit_events (id, time, type) OVERRIDING SYSTEM VALUE SELECT id, time, 'rewritten' FROM audit_events
			ON CONFLICT (id) DO UPDATE SET type = excluded.type`,
		`INSERT INTO audit_events (id, time, type) VALUES (12345, 0, 'chosen id')`,
	} {
		if _, err := db.Exec(ctx, q); err == nil {
			t.Errorf("%s: succeeded", q)
		}
	}
	// Outside DeleteAuditBefore's transaction the committed cutoff is 0.
	if _, err := db.Exec(ctx, `DELETE FROM audit_retention`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `DELETE FROM audit_events`); err == nil {
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
	cfg := freshDatabase(t)
	s := openTest(t, cfg, OpenOptions{})
	const n = 2*auditDeleteBatch + 17
	db := rawConn(t, cfg)
	if _, err := db.Exec(ctx, `INSERT INTO audit_events (time, type) SELECT $1 - i, 'old' FROM generate_series(1, $2) AS i`,
		t0.Unix(), n); err != nil {
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
	if err := db.QueryRow(ctx, `SELECT cutoff FROM audit_retention WHERE id = 1`).Scan(&cutoff); err != nil || cutoff != 0 {
		t.Fatalf("delete guard left open: cutoff %d, %v", cutoff, err)
	}
	if _, err := db.Exec(ctx, `DELETE FROM audit_events`); err == nil {
		t.Errorf("DELETE from audit_events succeeded after DeleteAuditBefore")
	}
	if evs, err := s.ListAudit(ctx, storage.AuditFilter{}); err != nil || len(evs) != 1 || evs[0].Type != "kept" {
		t.Fatalf("left: %+v, %v", evs, err)
	}
}

// inFlight runs the statements of a transaction on a connection of its own
// and leaves it open, standing in for another replica's transaction in
// flight; the returned function commits it.
func inFlight(t *testing.T, cfg *pgxpool.Config, stmts ...string) (commit func()) {
	t.Helper()
	ctx := context.Background()
	conn := rawConn(t, cfg)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range stmts {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return func() {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// waitsFor runs op, checks that it is still waiting after a while (for the
// transaction in flight), calls release, and returns op's error.
func waitsFor(t *testing.T, what string, op func() error, release func()) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- op() }()
	select {
	case err := <-done:
		release()
		t.Fatalf("%s did not wait for the transaction in flight: %v", what, err)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	return <-done
}

// TestRevocationWaitsForRotation: every revocation by a predicate (a
// family, a user, a session, an auth request's tokens) waits for a
// rotation in flight on another replica and revokes the token that
// rotation adds. Under READ COMMITTED the revoking UPDATE would otherwise
// wait only for the old token's row and never see the new one (it is not
// in the statement's snapshot), leaving it live after "sign out
// everywhere" or a detected reuse.
func TestRevocationWaitsForRotation(t *testing.T) {
	ctx := context.Background()
	cfg := freshDatabase(t)
	s := openTest(t, cfg, OpenOptions{})
	now := t0
	type env struct{ user, family, session, code string }
	cases := []struct {
		name string
		op   func(e env) error
	}{
		{"RevokeRefreshFamily", func(e env) error { return s.RevokeRefreshFamily(ctx, e.family, now) }},
		{"RefreshTokenByHash of a used token", func(e env) error {
			_, err := s.RefreshTokenByHash(ctx, []byte("rt0-"+e.user), now)
			if !errors.Is(err, storage.ErrReused) {
				return fmt.Errorf("want ErrReused: %w", err)
			}
			return nil
		}},
		{"ConsumeAuthCode of a used code", func(e env) error {
			_, err := s.ConsumeAuthCode(ctx, []byte(e.code), now)
			if !errors.Is(err, storage.ErrReused) {
				return fmt.Errorf("want ErrReused: %w", err)
			}
			return nil
		}},
		{"EndUserSessions", func(e env) error { _, err := s.EndUserSessions(ctx, e.user, "", now); return err }},
		{"EndUserSessions at the client", func(e env) error { _, err := s.EndUserSessions(ctx, e.user, "c", now); return err }},
		{"DeleteTOTP", func(e env) error { _, err := s.DeleteTOTP(ctx, e.user, now); return err }},
		{"ReplaceRecoveryCodes", func(e env) error {
			_, err := s.ReplaceRecoveryCodes(ctx, e.user, [][]byte{[]byte("rc")}, now)
			return err
		}},
		{"EndSession", func(e env) error { _, err := s.EndSession(ctx, []byte(e.session), now); return err }},
		{"DeleteClient", func(e env) error { return s.DeleteClient(ctx, "c") }},
	}
	if err := s.CreateClient(ctx, storage.Client{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	for i, tc := range cases {
		e := env{user: fmt.Sprintf("u%d", i), family: fmt.Sprintf("f%d", i), session: fmt.Sprintf("s%d", i), code: fmt.Sprintf("code%d", i)}
		ar := fmt.Sprintf("ar%d", i)
		if err := s.CreateUser(ctx, storage.User{ID: e.user, Username: e.user}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateSession(ctx, storage.Session{IDHash: []byte(e.session), UserID: e.user, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAuthRequest(ctx, storage.AuthRequest{ID: ar, ClientID: "c", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := s.CompleteFromSession(ctx, ar, storage.Session{IDHash: []byte(e.session), UserID: e.user, AuthTime: now}, now); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveAuthCode(ctx, ar, []byte(e.code), now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ConsumeAuthCode(ctx, []byte(e.code), now); err != nil {
			t.Fatal(err)
		}
		rt := func(n int) storage.RefreshToken {
			return storage.RefreshToken{ID: fmt.Sprintf("rt%d-%s", n, e.user), TokenHash: []byte(fmt.Sprintf("rt%d-%s", n, e.user)),
				FamilyID: e.family, ClientID: "c", UserID: e.user, Scopes: []string{"openid"}, AuthRequestID: ar,
				SessionHash: []byte(e.session), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		}
		if err := s.CreateRefreshToken(ctx, rt(0), storage.AccessToken{}); err != nil {
			t.Fatal(err)
		}
		if err := s.RotateRefreshToken(ctx, rt(0).TokenHash, rt(1), storage.AccessToken{}, now); err != nil {
			t.Fatal(err)
		}
		// Another replica rotates rt1 to rt2 (with an access token), taking
		// the locks RotateRefreshToken takes, and has not committed yet.
		commit := inFlight(t, cfg,
			fmt.Sprintf(`SELECT 1 FROM users WHERE id = '%s' FOR KEY SHARE`, e.user),
			fmt.Sprintf(`SELECT pg_advisory_xact_lock_shared(%d, hashtext('c'))`, clientLockClass),
			fmt.Sprintf(`UPDATE refresh_tokens SET used_at = %d WHERE id = 'rt1-%s'`, now.Unix(), e.user),
			fmt.Sprintf(`INSERT INTO refresh_tokens (id, token_hash, family_id, client_id, user_id, scopes, auth_request_id,
				session_hash, created_at, expires_at) VALUES ('rt2-%[1]s', 'rt2-%[1]s', '%[2]s', 'c', '%[1]s', '["openid"]',
				'%[3]s', '%[4]s', %[5]d, %[6]d)`, e.user, e.family, ar, e.session, now.Unix(), now.Add(time.Hour).Unix()),
			fmt.Sprintf(`INSERT INTO access_tokens (id, client_id, user_id, scopes, refresh_token_id, auth_request_id, session_hash,
				created_at, expires_at) VALUES ('at2-%[1]s', 'c', '%[1]s', '["openid"]', 'rt2-%[1]s', '%[2]s', '%[3]s', %[4]d, %[5]d)`,
				e.user, ar, e.session, now.Unix(), now.Add(time.Hour).Unix()))
		if err := waitsFor(t, tc.name, func() error { return tc.op(e) }, commit); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if _, err := s.RefreshTokenByHash(ctx, []byte("rt2-"+e.user), now); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: the rotated-in refresh token is still live: %v", tc.name, err)
		}
		if _, err := s.AccessTokenByID(ctx, "at2-"+e.user, now); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: the rotated-in access token is still live: %v", tc.name, err)
		}
	}
}

// TestNameKeyMovesWithClaimInFlight: the counter that CreateUser takes over
// from the name, and that DeleteUser gives back, is the one a claim in
// flight on another replica leaves, not the one before it.
func TestNameKeyMovesWithClaimInFlight(t *testing.T) {
	ctx := context.Background()
	cfg := freshDatabase(t)
	s := openTest(t, cfg, OpenOptions{})
	p := storage.LockPolicy{FreeFailures: 10, HardLimit: 20, Decay: time.Hour}
	if _, err := s.ClaimUnknownAttempt(ctx, "key", t0, p); err != nil {
		t.Fatal(err)
	}
	db := rawConn(t, cfg)
	failures := func(q string) int {
		var n int
		if err := db.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	commit := inFlight(t, cfg, `UPDATE unknown_attempts SET failures = 2, claims = 2 WHERE key = 'key'`)
	if err := waitsFor(t, "CreateUser", func() error {
		return s.CreateUser(ctx, storage.User{ID: "u1", Username: "alice", NameKey: "key"})
	}, commit); err != nil {
		t.Fatal(err)
	}
	if n := failures(`SELECT failures FROM attempts WHERE user_id = 'u1' AND factor = 'password'`); n != 2 {
		t.Fatalf("the account took over %d failures, want the 2 the claim in flight left", n)
	}
	commit = inFlight(t, cfg, `UPDATE attempts SET failures = 3, claims = 3 WHERE user_id = 'u1' AND factor = 'password'`)
	if err := waitsFor(t, "DeleteUser", func() error { return s.DeleteUser(ctx, "u1") }, commit); err != nil {
		t.Fatal(err)
	}
	if n := failures(`SELECT failures FROM unknown_attempts WHERE key = 'key'`); n != 3 {
		t.Fatalf("the name got back %d failures, want the 3 the claim in flight left", n)
	}
}
