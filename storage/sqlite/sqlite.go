// Package sqlite is the embedded SQLite backend of storage.Store, on the
// pure-Go driver modernc.org/sqlite.
//
// Concurrency model: the database runs in WAL mode (many readers, one
// writer). Every read-modify-write is one short BEGIN IMMEDIATE transaction,
// so it takes the write lock before it reads and can never fail half-way with
// SQLITE_BUSY_SNAPSHOT. Within one process, writers queue on a Go semaphore
// instead of SQLite's sleeping busy handler, which keeps lock hand-over in
// microseconds; between processes the busy_timeout does the queueing, and a
// residual SQLITE_BUSY is retried a few times before it is returned.
//
// Representation: times are INTEGER unix seconds UTC (0 is the zero time),
// string lists are JSON arrays, booleans 0/1.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/totp-idp/idp/storage"
)

// Compile-time proof that *Store implements the contract.
var _ storage.Store = (*Store)(nil)

// migrationFS holds the numbered schema migrations (NNNN_name.sql), applied
// in order by Open.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

const (
	// maxOpenConns bounds the pool; WAL readers run in parallel, writers
	// queue on writeSem anyway.
	maxOpenConns = 8
	// busyAttempts is how often a write that met SQLITE_BUSY (the
	// busy_timeout ran out, another process held the lock) is tried in all.
	busyAttempts = 3
	// busyBackoff is the first pause between such attempts; it doubles.
	busyBackoff = 20 * time.Millisecond
	// authRequestGrace keeps an expired auth request this long so that a
	// late replay of its code is still recognised as reuse.
	authRequestGrace = time.Hour
)

// dsnParams are the connection settings. busy_timeout comes first so the
// later pragmas (journal_mode=WAL needs the lock on a fresh file) already
// wait instead of failing. synchronous=FULL syncs the WAL at every commit:
// with NORMAL a power loss can roll back committed transactions, and a
// rolled-back attempt claim hands its guesses back to the attacker
// (docs/THREAT-MODEL.md rules 2 and 3). It costs an fsync per write
// transaction (README, Performance).
//
// secure_delete overwrites deleted and replaced content with zeros, so a
// value re-sealed by `idp secrets rotate` leaves no copy the old key opens
// in the database file; journal_size_limit truncates the WAL to 64 MiB
// whenever it restarts, and the checkpointer truncates it when it grows
// past walTruncateFrames (a flood of writes must not grow it for ever).
const dsnParams = "_pragma=busy_timeout(10000)" +
	"&_pragma=journal_mode(WAL)" +
	"&_pragma=foreign_keys(1)" +
	"&_pragma=synchronous(FULL)" +
	"&_pragma=wal_autocheckpoint(0)" +
	"&_pragma=secure_delete(1)" +
	"&_pragma=journal_size_limit(67108864)" +
	"&_txlock=immediate"

// walTruncateFrames is the WAL length (in pages) past which the
// checkpointer truncates it: 16384 pages of 4 KiB are 64 MiB.
var walTruncateFrames = 16384

// checkpointEvery is how often the background checkpointer copies the WAL
// into the database. SQLite's automatic checkpoint is off: it would run
// (with its fsync) inside whichever commit crosses the threshold, while
// this process's single-writer semaphore is held, stalling every writer.
const checkpointEvery = time.Second

func init() {
	// Our DSN is a constant apart from the escaped path, but refuse
	// multi-statement _pragma values process-wide as a second line of
	// defence (the driver runs them verbatim).
	sqlite.StrictPragmas(true)
}

// Store is a storage.Store on one SQLite database file. It is safe for
// concurrent use, also by several processes sharing the file.
type Store struct {
	db *sql.DB
	// writeSem serialises this process's write transactions (capacity 1).
	writeSem chan struct{}

	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt

	stopCheckpoints chan struct{}
	checkpointsDone chan struct{}

	closeOnce sync.Once
	closeErr  error

	// obs receives write transactions and retries (ObserveTransactions).
	obs atomic.Pointer[storage.TxObserver]
}

// ObserveTransactions implements storage.Observable.
func (s *Store) ObserveTransactions(o storage.TxObserver) { s.obs.Store(&o) }

// Open opens (creating if needed) the database file at path, applies pending
// migrations and returns the store. Several processes may open the same file
// at once.
//
// A new database file is created with mode 0600 before SQLite opens it:
// it holds argon2id hashes, and SQLite gives the -wal and -shm files it
// creates the database file's permission bits, so all three are readable
// by their owner only, whatever the umask (OWASP ASVS 5.0 V13.3). The mode
// of an existing file is left as the operator set it.
func Open(ctx context.Context, path string) (*Store, error) {
	dsn, err := buildDSN(path)
	if err != nil {
		return nil, err
	}
	if err := createPrivate(path); err != nil {
		return nil, fmt.Errorf("sqlite: create %s: %w", path, err)
	}
	return openDSN(ctx, dsn, path)
}

// createPrivate creates an empty file at path with mode 0600 unless a file
// is there already. An empty file is an empty SQLite database.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	// Exactly 0600: a umask may have taken away the owner's write bit.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// openDSN opens the store on a ready DSN; label names it in errors. Tests
// use it to vary the connection settings.
func openDSN(ctx context.Context, dsn, label string) (*Store, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", label, err)
	}
	db.SetMaxOpenConns(maxOpenConns)
	// Keep idle connections: a new one re-runs the pragmas and loses its
	// prepared statements.
	db.SetMaxIdleConns(maxOpenConns)
	s := &Store{db: db, writeSem: make(chan struct{}, 1), stmts: map[string]*sql.Stmt{},
		stopCheckpoints: make(chan struct{}), checkpointsDone: make(chan struct{})}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: migrate %s: %w", label, err)
	}
	go s.checkpoints()
	return s, nil
}

// checkpoints runs a PASSIVE checkpoint every checkpointEvery, outside the
// write semaphore: it never waits for readers or writers, and what it
// cannot copy now it copies next time. Every process on the file runs one.
func (s *Store) checkpoints() {
	defer close(s.checkpointsDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stopCheckpoints:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var busy, frames, done int
			err := s.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &done)
			cancel()
			if err == nil && frames > walTruncateFrames {
				// Under steady writes the WAL never restarts by itself;
				// truncate it (this process's writers wait meanwhile).
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				_ = s.Compact(ctx)
				cancel()
			}
		}
	}
}

var _ storage.Compacter = (*Store)(nil)

// Compact copies the whole WAL into the database and truncates it to zero
// bytes, waiting for readers and, in this process, holding writers back.
// With secure_delete, no replaced value survives in the files afterwards:
// `idp secrets rotate` calls it so that the old key opens nothing.
func (s *Store) Compact(ctx context.Context) error {
	select {
	case s.writeSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.writeSem }()
	var busy, frames, done int
	if err := s.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &done); err != nil {
		return mapErr("compact", err)
	}
	if busy != 0 {
		return fmt.Errorf("sqlite: compact: the WAL is still in use by another process: %w", storage.ErrBusy)
	}
	return nil
}

// buildDSN turns a file path into a driver DSN. The path is made absolute and
// percent-encoded, so '?', '&', '#' or '%' in it cannot end the path and
// inject query parameters (and with them pragmas).
func buildDSN(p string) (string, error) {
	if p == "" || p == ":memory:" || strings.HasPrefix(p, "file:") {
		return "", fmt.Errorf("sqlite: %q is not a database file path", p)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", errors.New("sqlite: database path contains NUL")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("sqlite: %w", err)
	}
	abs = filepath.ToSlash(abs)
	if !strings.HasPrefix(abs, "/") {
		abs = "/" + abs // Windows "C:/x" becomes the URI path "/C:/x"
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.WriteString("file:")
	for i := 0; i < len(abs); i++ {
		c := abs[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '/', c == '-', c == '.', c == '_', c == '~':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	b.WriteByte('?')
	b.WriteString(dsnParams)
	return b.String(), nil
}

// Close closes the database. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stopCheckpoints)
		<-s.checkpointsDone
		// Leave a short WAL behind; another process may still hold it
		// open, which is why this is PASSIVE too.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = s.db.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
		cancel()
		s.stmtMu.Lock()
		for _, st := range s.stmts {
			st.Close()
		}
		s.stmts = nil
		s.stmtMu.Unlock()
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Ping reports whether the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Migrations

type migration struct {
	version int
	name    string
	sql     string
}

// migrations lists the embedded migrations in version order.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %q: name must be NNNN_name.sql", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %q and %q share version %d", prev, name, v)
		}
		seen[v] = name
		text, err := migrationFS.ReadFile(path.Join("migrations", name))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(text)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// SchemaCurrent implements storage.SchemaChecker.
func (s *Store) SchemaCurrent(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	want := ms[len(ms)-1].version
	var have, n int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0), COUNT(*) FROM schema_migrations`).Scan(&have, &n); err != nil {
		return fmt.Errorf("sqlite: schema version: %w", err)
	}
	if have != want || n != len(ms) {
		return fmt.Errorf("database schema version %d (%d migrations), this program's is %d (%d)", have, n, want, len(ms))
	}
	return nil
}

// migrate applies the pending migrations in one IMMEDIATE transaction. The
// write lock is taken before schema_migrations is read, so a second process
// opening the same fresh file waits and then finds everything applied.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	return s.write(ctx, func(tx *txn) error {
		if _, err := tx.tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			applied_at INTEGER NOT NULL)`); err != nil {
			return err
		}
		applied := map[int]bool{}
		maxApplied := 0
		rows, err := tx.tx.QueryContext(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return err
			}
			applied[v] = true
			maxApplied = max(maxApplied, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ms) > 0 && maxApplied > ms[len(ms)-1].version {
			return fmt.Errorf("database schema version %d is newer than this program (%d)",
				maxApplied, ms[len(ms)-1].version)
		}
		for _, m := range ms {
			if applied[m.version] {
				continue
			}
			if _, err := tx.tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			if _, err := tx.tx.ExecContext(ctx,
				`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
				m.version, time.Now().Unix()); err != nil {
				return err
			}
		}
		return nil
	})
}

// ---------------------------------------------------------------------------
// Statements and transactions

// prepared returns a cached prepared statement for query. All queries are
// constants, so the cache is bounded by the source code.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if s.stmts == nil {
		return nil, errors.New("sqlite: store is closed")
	}
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.stmts[query] = st
	return st, nil
}

// queryRow runs a single-row read outside any transaction.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) (*sql.Row, error) {
	st, err := s.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryRowContext(ctx, args...), nil
}

// query runs a read outside any transaction.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// scanner is a row of either kind (*sql.Row, *sql.Rows).
type scanner interface{ Scan(...any) error }

// one runs a single-row read outside any transaction and scans it with
// scan; errors name the operation what (mapErr: ErrNotFound for no row).
func one[T any](ctx context.Context, s *Store, what string, scan func(scanner) (T, error), query string, args ...any) (T, error) {
	row, err := s.queryRow(ctx, query, args...)
	if err != nil {
		var zero T
		return zero, mapErr(what, err)
	}
	v, err := scan(row)
	return v, mapErr(what, err)
}

// all runs a read outside any transaction and scans every row with scan.
func all[T any](ctx context.Context, s *Store, what string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, mapErr(what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, mapErr(what, err)
		}
		out = append(out, v)
	}
	return out, mapErr(what, rows.Err())
}

// txn is a write transaction with the store's statement cache.
type txn struct {
	ctx context.Context
	s   *Store
	tx  *sql.Tx
}

func (t *txn) stmt(query string) (*sql.Stmt, error) {
	st, err := t.s.prepared(t.ctx, query)
	if err != nil {
		return nil, err
	}
	return t.tx.StmtContext(t.ctx, st), nil
}

// exec runs a statement and returns the number of rows it changed.
func (t *txn) exec(query string, args ...any) (int64, error) {
	st, err := t.stmt(query)
	if err != nil {
		return 0, err
	}
	res, err := st.ExecContext(t.ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// queryRow runs a single-row query inside the transaction.
func (t *txn) queryRow(query string, args ...any) (*sql.Row, error) {
	st, err := t.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.QueryRowContext(t.ctx, args...), nil
}

// commitThen wraps an error that a transaction function returns after
// making changes that must be kept (revoking a token family on reuse): the
// transaction commits and the caller gets err.
type commitThen struct{ err error }

// Error returns the wrapped error's message.
func (c commitThen) Error() string { return c.err.Error() }

// Unwrap returns the wrapped error.
func (c commitThen) Unwrap() error { return c.err }

// write runs fn in one BEGIN IMMEDIATE transaction, retrying a few times on
// SQLITE_BUSY. fn may run more than once and must not keep state across
// runs other than by overwriting its results.
func (s *Store) write(ctx context.Context, fn func(*txn) error) (err error) {
	if o := s.obs.Load(); o != nil {
		start := time.Now()
		defer func() { (*o).Transaction(time.Since(start), err) }()
	}
	wait := busyBackoff
	for attempt := 1; ; attempt++ {
		err := s.writeOnce(ctx, fn)
		if err == nil || !isBusy(err) {
			return err
		}
		if attempt == busyAttempts {
			return fmt.Errorf("sqlite: database busy after %d attempts: %w", attempt, err)
		}
		if o := s.obs.Load(); o != nil {
			(*o).Retry()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sqlite: database busy: %w", errors.Join(err, ctx.Err()))
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func (s *Store) writeOnce(ctx context.Context, fn func(*txn) error) (err error) {
	select {
	case s.writeSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.writeSem }()

	// The DSN's _txlock=immediate makes BeginTx send BEGIN IMMEDIATE.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	t := &txn{ctx: ctx, s: s, tx: tx}
	err = fn(t)
	var keep commitThen
	if err != nil && !errors.As(err, &keep) {
		tx.Rollback()
		return err
	}
	// The mails the caller's context carries commit with this write, or
	// not at all (storage.WithMail).
	if mails := storage.MailsOf(ctx); len(mails) > 0 {
		if merr := insertMails(t, mails); merr != nil {
			tx.Rollback()
			return merr
		}
	}
	if cerr := tx.Commit(); cerr != nil {
		return cerr
	}
	if keep.err != nil {
		return keep.err
	}
	return nil
}

// exec runs one write statement as its own transaction (with the BUSY
// retry) and returns the number of rows changed.
func (s *Store) exec(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *txn) error {
		var err error
		n, err = tx.exec(query, args...)
		return err
	})
	return n, err
}

// ---------------------------------------------------------------------------
// Errors

func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// isBusy reports SQLITE_BUSY in any of its extended forms.
func isBusy(err error) bool {
	return sqliteCode(err)&0xff == sqlite3.SQLITE_BUSY
}

// mapErr translates constraint violations into the storage sentinels:
// a duplicate key is ErrConflict, a reference to a missing row (a user that
// does not exist) ErrNotFound. Other errors are wrapped with op.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if isBusy(err) {
		return fmt.Errorf("sqlite: %s: %w", op, errors.Join(storage.ErrBusy, err))
	}
	switch code := sqliteCode(err); code {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return fmt.Errorf("sqlite: %s: %w", op, storage.ErrConflict)
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("sqlite: %s: referenced row: %w", op, storage.ErrNotFound)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: %s: %w", op, storage.ErrNotFound)
	}
	// Sentinels from our own logic pass through unwrapped so messages stay
	// short; errors.Is works either way.
	for _, e := range []error{storage.ErrNotFound, storage.ErrConflict, storage.ErrWrongState,
		storage.ErrReplay, storage.ErrReused} {
		if errors.Is(err, e) {
			return err
		}
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// ---------------------------------------------------------------------------
// Value encoding

// unix encodes a time as unix seconds; the zero time is 0.
func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// fromUnix decodes unix seconds; 0 is the zero time.
func fromUnix(x int64) time.Time {
	if x == 0 {
		return time.Time{}
	}
	return time.Unix(x, 0).UTC()
}

// list encodes a string list as a JSON array ("[]" for none).
func list(v []string) string {
	if len(v) == 0 {
		return "[]"
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // []string always marshals
	}
	return string(b)
}

// unlist decodes a JSON array; an empty array is nil.
func unlist(s string) ([]string, error) {
	if s == "" || s == "[]" {
		return nil, nil
	}
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("sqlite: corrupt string list %q: %w", s, err)
	}
	return v, nil
}

// nullStr stores "" as NULL for nullable references (foreign keys).
func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nullBytes stores an empty slice as NULL.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
