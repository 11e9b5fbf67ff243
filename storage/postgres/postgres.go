// Package postgres is the PostgreSQL backend of storage.Store, on
// github.com/jackc/pgx/v5. Several provider processes (replicas) may share
// one database: every decision the contract makes atomic (storage/storage.go)
// is one transaction here, and holds across processes.
//
// Concurrency model: transactions run at READ COMMITTED (never SERIALIZABLE)
// and decide on rows they have locked, so that what a concurrent writer did
// is either wholly before the decision or waits for it:
//
//   - the attempt guard's counters are read with SELECT … FOR UPDATE after
//     an INSERT … ON CONFLICT DO NOTHING has made sure the row exists (a
//     missing row cannot be locked), and the policy's answer is written back
//     in the same transaction (storage.LockPolicy; never re-implemented);
//   - single-use values (an authorization code, a refresh token, a TOTP
//     step, a recovery code) change state by a guarded UPDATE … WHERE
//     <unused> [RETURNING]: under READ COMMITTED a second UPDATE waits for
//     the first and then re-checks its WHERE on the row the first left
//     (PostgreSQL documentation, 13.2.1 "Read Committed Isolation Level"),
//     so it matches nothing;
//   - a user's row in users is the lock that orders what ends a user's
//     sign-ins against what starts them (see userLock): every insert of a
//     row that references a user already takes FOR KEY SHARE on it (the
//     foreign key check), and operations that revoke by a predicate on the
//     user (all its tokens, a session's tokens, a family) take FOR UPDATE
//     first, so no token can be issued or rotated into the predicate behind
//     their back (READ COMMITTED does not see rows inserted after a
//     statement's snapshot);
//   - what has no row to lock is ordered by transaction-scoped advisory
//     locks: migrations, signing-key additions, a client's deletion against
//     its tokens' rotations, and garbage collection and audit pruning
//     (pg_try_advisory_xact_lock: one replica at a time, the others skip).
//
// Every transaction bounds its waits with SET LOCAL lock_timeout and
// statement_timeout; a transaction that fails on a deadlock (40P01), a lock
// timeout (55P03), a serialization failure (40001) or a lost connection is
// retried a few times with a short jittered backoff while a budget of a
// second lasts, then the error wraps storage.ErrBusy, like a locked SQLite
// database: nothing was changed. The one exception is a connection lost
// while COMMIT was on its way: the outcome is unknown, so that error is
// neither retried nor ErrBusy.
//
// Representation, as in storage/sqlite so that the two read alike: times are
// BIGINT unix seconds UTC (0 is the zero time), string lists JSON arrays in
// TEXT, blobs BYTEA, flags BOOLEAN; column names are sqlite's.
//
// There is no storage.Compacter: PostgreSQL keeps replaced row versions
// until VACUUM reuses their space, and in its WAL, archives and standbys,
// none of which a client can clear. After `idp secrets rotate` the old
// key's ciphertexts are gone from the live tables only.
package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/totp-idp/idp/storage"
)

// Compile-time proof that *Store implements the contract.
var _ storage.Store = (*Store)(nil)

// embeddedMigrations holds the numbered schema migrations (NNNN_name.sql),
// applied in order by Open.
//
//go:embed migrations/*.sql
var embeddedMigrations embed.FS

// migrationFS is where migrations are read from: the embedded files (tests
// add one to see an old schema).
var migrationFS fs.FS = embeddedMigrations

const (
	// retryAttempts is how often a transaction that failed on a transient
	// error is tried in all.
	retryAttempts = 4
	// retryBackoff is the first pause between attempts; it doubles, and
	// each pause is drawn from [wait/2, wait) so that replicas that
	// collided do not collide again in step.
	retryBackoff = 10 * time.Millisecond
	// retryBudget: no new attempt starts after this much time since the
	// first one. The pauses add at most 70 ms; an attempt that waited out
	// lock_timeout (2 s) is not repeated.
	retryBudget = time.Second
	// authRequestGrace keeps an expired auth request this long so that a
	// late replay of its code is still recognised as reuse.
	authRequestGrace = time.Hour

	// Advisory lock keys (pg_advisory_xact_lock, one bigint key space; they
	// are per database). Spelled in ASCII for pg_locks readers.
	migrationLock  int64 = 0x6964702d6d696772 // "idp-migr"
	gcLock         int64 = 0x6964702d2d2d6763 // "idp---gc"
	auditPruneLock int64 = 0x6964702d61756474 // "idp-audt"
	signingKeyLock int64 = 0x6964702d6b657973 // "idp-keys"
	// clientLockClass is the first key of a client's lock, the second
	// being hashtext(client id): the two-int4 key space, which does not
	// overlap the bigint one (PostgreSQL documentation, 9.27.10 "Advisory
	// Lock Functions"). Two clients whose ids hash alike only share a
	// lock.
	clientLockClass int32 = 0x69647063 // "idpc"
)

// attemptTimeout bounds one attempt on the client side: statement_timeout
// normally ends a slow statement first, but a server that stops answering
// (or a pool with no free connection) is only noticed by the deadline.
var attemptTimeout = 6 * time.Second

// maintenanceTimeout bounds an operator's whole-table transaction
// (ReencryptSecrets) on the client side; each of its statements still has
// beginTx's statement_timeout.
const maintenanceTimeout = 10 * time.Minute

// beginTx starts every read-write transaction (one round trip). The
// timeouts are SET LOCAL so that they hold whatever the connection's
// defaults are, also behind a transaction-pooling proxy:
//
//   - lock_timeout: a row lock held by a stuck replica makes this
//     transaction fail (55P03, retried, then ErrBusy) instead of queueing
//     every login of that account behind it;
//   - statement_timeout: no statement runs away with a connection;
//   - idle_in_transaction_session_timeout: a replica frozen in the middle
//     of a transaction loses its locks after 10 s (our transactions never
//     wait between statements).
//
// READ COMMITTED is named explicitly: the decisions above are built for it,
// whatever default_transaction_isolation says.
const beginTx = `BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE;
SET LOCAL lock_timeout = '2s';
SET LOCAL statement_timeout = '5s';
SET LOCAL idle_in_transaction_session_timeout = '10s'`

// beginMigration starts the migration transaction: it may wait up to a
// minute for another replica's migration (the advisory lock), and its DDL
// may run long; lock_timeout is shortened again after the advisory lock
// (Store.Migrate). migrationTimeout is its client-side deadline.
const (
	beginMigration = `BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE;
SET LOCAL lock_timeout = '60s';
SET LOCAL statement_timeout = '10min'`
	migrationTimeout = 11 * time.Minute
)

// Store is a storage.Store on one PostgreSQL database. It is safe for
// concurrent use, also by several processes sharing the database.
type Store struct {
	pool *pgxpool.Pool
	// obs receives write transactions and retries (ObserveTransactions).
	obs atomic.Pointer[storage.TxObserver]
}

// ObserveTransactions implements storage.Observable.
func (s *Store) ObserveTransactions(o storage.TxObserver) { s.obs.Store(&o) }

// PoolStats implements storage.Pooled.
func (s *Store) PoolStats() storage.PoolStats {
	st := s.pool.Stat()
	return storage.PoolStats{Total: int(st.TotalConns()), InUse: int(st.AcquiredConns()), Max: int(st.MaxConns()),
		Waits: st.EmptyAcquireCount(), WaitTime: st.EmptyAcquireWaitTime()}
}

// OpenOptions changes what Open does.
type OpenOptions struct {
	// NoMigrate: do not apply migrations; fail unless the schema is
	// exactly the one this program expects (for deployments where a
	// separate step migrates, or where the runtime role may not run DDL).
	NoMigrate bool
}

// Open connects to the database named by url, applies pending migrations and
// returns the store. url is anything pgxpool.ParseConfig accepts: a
// postgres:// or postgresql:// URL or a keyword/value string, completed by
// the PG* environment variables and the password file as libpq does; pool
// settings such as pool_max_conns may be given in it. Several processes may
// open the same database at once.
func Open(ctx context.Context, url string) (*Store, error) {
	return OpenWith(ctx, url, OpenOptions{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, url string, o OpenOptions) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn masks passwords it recognises in parse errors.
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return openConfig(ctx, cfg, o)
}

// openConfig opens the store on a parsed configuration (tests change the
// database or the host in it).
func openConfig(ctx context.Context, cfg *pgxpool.Config, o OpenOptions) (*Store, error) {
	cc := cfg.ConnConfig
	if cc.ConnectTimeout == 0 {
		// A server that does not answer at all must not hold a request
		// until the client gives up (connect_timeout in the URL wins).
		cc.ConnectTimeout = 2 * time.Second
	}
	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		cc.RuntimeParams["application_name"] = "totp-idp"
	}
	if cfg.PingTimeout == 0 {
		cfg.PingTimeout = 2 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{pool: pool}
	label := fmt.Sprintf("database %q on %s", cc.Database, cc.Host)
	if o.NoMigrate {
		err = s.checkSchema(ctx)
	} else {
		err = s.Migrate(ctx)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %s: %w", label, err)
	}
	return s, nil
}

// Close closes every connection. It is safe to call more than once.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Ping reports whether the database answers a query (one attempt: a health
// check should say what it sees).
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	return mapErr("ping", s.pool.Ping(ctx))
}

// ---------------------------------------------------------------------------
// Migrations

type migration struct {
	version int
	name    string
	sql     string
}

// migrations lists the migrations in version order.
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
		text, err := fs.ReadFile(migrationFS, path.Join("migrations", name))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(text)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

const createSchemaMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	applied_at BIGINT  NOT NULL)`

// Migrate applies the pending migrations in one transaction, under a
// transaction-scoped advisory lock taken before schema_migrations is read:
// replicas starting together on a fresh database queue on it, and each
// after the first finds everything applied. A schema newer than this
// program is refused. Running it again changes nothing.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	return s.tx(ctx, beginMigration, migrationTimeout, func(tx *txn) error {
		if _, err := tx.exec(`SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return err
		}
		// From here on, DDL that waits for a table lock blocks every later
		// query on the table while it waits (13.3.1 "Table-Level Locks"):
		// give up quickly instead, and let the operator retry.
		if _, err := tx.exec(`SET LOCAL lock_timeout = '5s'`); err != nil {
			return err
		}
		if _, err := tx.exec(createSchemaMigrations); err != nil {
			return err
		}
		applied, err := appliedVersions(tx)
		if err != nil {
			return err
		}
		if latest, newest := ms[len(ms)-1].version, maxVersion(applied); newest > latest {
			return fmt.Errorf("database schema version %d is newer than this program (%d)", newest, latest)
		}
		for _, m := range ms {
			if applied[m.version] {
				continue
			}
			// No arguments: pgx sends the file with the simple query
			// protocol, which runs several statements.
			if _, err := tx.exec(m.sql); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			if _, err := tx.exec(`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
				m.version, time.Now().Unix()); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkSchema refuses a database whose schema is not exactly the embedded
// migrations (OpenOptions.NoMigrate), naming the versions found and wanted.
func (s *Store) checkSchema(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	var applied map[int]bool
	err = s.read(ctx, func(ctx context.Context) error {
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
			return err
		}
		applied = map[int]bool{}
		if !exists {
			return nil
		}
		rows, err := s.pool.Query(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return err
		}
		vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
		for _, v := range vs {
			applied[v] = true
		}
		return err
	})
	if err != nil {
		return mapErr("schema version", err)
	}
	latest, found := ms[len(ms)-1].version, maxVersion(applied)
	if found > latest {
		return fmt.Errorf("database schema version %d is newer than this program (%d)", found, latest)
	}
	var missing []string
	for _, m := range ms {
		if !applied[m.version] {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("database schema is at version %d, this program needs version %d (not applied: %s); "+
			"open it once without NoMigrate to apply the migrations", found, latest, strings.Join(missing, ", "))
	}
	return nil
}

func appliedVersions(tx *txn) (map[int]bool, error) {
	rows, err := tx.query(`SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	applied := map[int]bool{}
	for _, v := range vs {
		applied[v] = true
	}
	return applied, err
}

func maxVersion(applied map[int]bool) int {
	n := 0
	for v := range applied {
		n = max(n, v)
	}
	return n
}

// ---------------------------------------------------------------------------
// Transactions and retries

// txn is a read-write transaction.
type txn struct {
	ctx context.Context
	tx  pgx.Tx
}

// exec runs a statement and returns the number of rows it changed.
func (t *txn) exec(query string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(t.ctx, query, args...)
	return tag.RowsAffected(), err
}

// queryRow runs a single-row query inside the transaction.
func (t *txn) queryRow(query string, args ...any) pgx.Row {
	return t.tx.QueryRow(t.ctx, query, args...)
}

// query runs a query inside the transaction.
func (t *txn) query(query string, args ...any) (pgx.Rows, error) {
	return t.tx.Query(t.ctx, query, args...)
}

// commitThen wraps an error that a transaction function returns after
// making changes that must be kept (revoking a token family on reuse): the
// transaction commits and the caller gets err.
type commitThen struct{ err error }

// Error returns the wrapped error's message.
func (c commitThen) Error() string { return c.err.Error() }

// Unwrap returns the wrapped error.
func (c commitThen) Unwrap() error { return c.err }

// errRestart makes the transaction roll back and run again at once: what it
// read changed under it in a way that needs other locks (Store.run).
var errRestart = errors.New("postgres: transaction must restart")

// maxRestarts bounds errRestart; past it the operation is busy.
const maxRestarts = 3

// commitUnknownError: the connection failed while COMMIT was on its way, so
// the transaction may or may not have committed. It is never retried (a
// retry of ConsumeAuthCode would find its own use and report reuse) and is
// not ErrBusy ("nothing was changed" may be false).
type commitUnknownError struct{ err error }

func (e *commitUnknownError) Error() string {
	return "commit outcome unknown: " + e.err.Error()
}

func (e *commitUnknownError) Unwrap() error { return e.err }

// write runs fn in one read-write transaction (beginTx), retrying transient
// failures. fn may run more than once and must not keep state across runs
// other than by overwriting its results.
func (s *Store) write(ctx context.Context, fn func(*txn) error) error {
	start := time.Now()
	err := s.tx(ctx, beginTx, attemptTimeout, fn)
	if o := s.obs.Load(); o != nil {
		(*o).Transaction(time.Since(start), err)
	}
	return err
}

// maintain is write for an operator's whole-table transaction
// (ReencryptSecrets, DeleteClient): each attempt gets maintenanceTimeout.
func (s *Store) maintain(ctx context.Context, fn func(*txn) error) error {
	start := time.Now()
	err := s.tx(ctx, beginTx, maintenanceTimeout, fn)
	if o := s.obs.Load(); o != nil {
		(*o).Transaction(time.Since(start), err)
	}
	return err
}

// tx runs fn in a transaction begun by begin, each attempt within timeout.
func (s *Store) tx(ctx context.Context, begin string, timeout time.Duration, fn func(*txn) error) error {
	return s.run(ctx, timeout, func(ctx context.Context) error {
		tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: begin})
		if err != nil {
			return err
		}
		t := &txn{ctx: ctx, tx: tx}
		err = fn(t)
		var keep commitThen
		if err != nil && !errors.As(err, &keep) {
			// A failed rollback closes the connection, which the
			// server takes as a rollback.
			_ = tx.Rollback(ctx)
			return err
		}
		// The mails the caller's context carries commit with this write,
		// or not at all (storage.WithMail).
		if mails := storage.MailsOf(ctx); len(mails) > 0 {
			if merr := insertMails(t, mails); merr != nil {
				_ = tx.Rollback(ctx)
				return merr
			}
		}
		if cerr := tx.Commit(ctx); cerr != nil {
			// Only the server's own answer (a PgError: the transaction
			// was rolled back) says how COMMIT ended. Anything else, even
			// an error pgx calls safe to retry ("conn closed": a review
			// saw the server commit with that answer lost), may have
			// committed.
			var pgErr *pgconn.PgError
			if !errors.As(cerr, &pgErr) {
				return &commitUnknownError{cerr}
			}
			return cerr
		}
		return keep.err
	})
}

// exec runs one write statement as its own transaction (with the retries)
// and returns the number of rows changed.
func (s *Store) exec(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *txn) error {
		var err error
		n, err = tx.exec(query, args...)
		return err
	})
	return n, err
}

// read runs fn, a read outside any transaction, with the retries.
func (s *Store) read(ctx context.Context, fn func(context.Context) error) error {
	return s.run(ctx, attemptTimeout, fn)
}

// run runs fn with a deadline of timeout, again after a transient
// failure (with backoff) or at once after errRestart, and returns an error
// wrapping storage.ErrBusy when the attempts or retryBudget run out.
func (s *Store) run(ctx context.Context, timeout time.Duration, fn func(context.Context) error) error {
	start := time.Now()
	wait := retryBackoff
	restarts := 0
	for attempt := 1; ; {
		actx, cancel := context.WithTimeout(ctx, timeout)
		err := fn(actx)
		timedOut := actx.Err() != nil
		cancel()
		var unknown *commitUnknownError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &unknown):
			// COMMIT was sent and its answer lost: the transaction may
			// have committed. Never again (it would count a claim or
			// apply a refund twice), and never ErrBusy, which promises
			// nothing changed; the caller answers a server error.
			return err
		case ctx.Err() != nil:
			// The caller gave up: not the database's fault.
			return &callerDoneError{ctx: ctx.Err(), err: err}
		case errors.Is(err, errRestart):
			if restarts++; restarts > maxRestarts {
				return &busyError{attempts: attempt, err: errors.New("rows kept changing under the transaction")}
			}
			continue
		case !timedOut && !transient(err):
			return err
		}
		if attempt == retryAttempts || time.Since(start) > retryBudget {
			return &busyError{attempts: attempt, err: err}
		}
		if o := s.obs.Load(); o != nil {
			(*o).Retry()
		}
		pause := wait/2 + rand.N(wait/2)
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), &busyError{attempts: attempt, err: err})
		case <-time.After(pause):
		}
		wait *= 2
		attempt++
	}
}

// callerDoneError: the caller's context ended during an attempt. It is not
// ErrBusy, whatever the attempt's own error looks like.
type callerDoneError struct{ ctx, err error }

func (e *callerDoneError) Error() string { return e.ctx.Error() + ": " + e.err.Error() }

func (e *callerDoneError) Unwrap() []error { return []error{e.ctx, e.err} }

// busyError is a transient failure that outlasted the retries.
type busyError struct {
	attempts int
	err      error
}

func (e *busyError) Error() string {
	return fmt.Sprintf("database busy after %d attempts: %v", e.attempts, e.err)
}

func (e *busyError) Unwrap() []error { return []error{storage.ErrBusy, e.err} }

// transient reports failures that a new attempt may not meet: a deadlock,
// a lock timeout, a serialization failure, a server shutting down or
// refusing connections, and a lost or unreachable connection.
func transient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", // serialization_failure
			"40P01", // deadlock_detected
			"55P03", // lock_not_available (lock_timeout)
			"53300", // too_many_connections
			"57P01", // admin_shutdown
			"57P02", // crash_shutdown
			"57P03": // cannot_connect_now (starting up, shutting down)
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08") // connection_exception
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	// SafeToRetry: the error came before anything reached the server (a
	// pooled connection found closed, ErrConnClosed).
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, context.DeadlineExceeded)
}

// ---------------------------------------------------------------------------
// User locks

// userLock is a row lock on a user (users.id), taken first by the
// transactions that must be ordered against each other for that user, so
// that they also take their other locks in one order (no deadlocks). The
// foreign key check of every insert referencing a user takes KEY SHARE
// already (PostgreSQL documentation, 13.3.2 "Row-Level Locks").
type userLock string

const (
	// lockStep: a step of the user's sign-in or token use that changes
	// rows an ending also changes (CompleteTOTP, CompleteRecovery,
	// RotateRefreshToken). Steps do not wait for each other.
	lockStep userLock = "FOR KEY SHARE"
	// lockOwn: changes of the user's own credential set that run one at a
	// time per user (ConfirmEnrollment, PutTOTP, RememberDevice); they do
	// not wait for steps.
	lockOwn userLock = "FOR NO KEY UPDATE"
	// lockEnd: ending what the user is signed in with, or the user: waits
	// for every step, insert and change above in flight and holds off new
	// ones until it commits, so its predicates see all of them.
	lockEnd userLock = "FOR UPDATE"
)

// lockUser locks the user's row in mode; found is false when there is no
// such user (nothing is locked then).
func lockUser(tx *txn, id string, mode userLock) (found bool, err error) {
	var one int
	err = tx.queryRow(`SELECT 1 FROM users WHERE id = $1 `+string(mode), id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// lockUsersWhere locks FOR UPDATE (lockEnd), in id order, the users whose
// ids the subquery sub returns.
func lockUsersWhere(tx *txn, sub string, args ...any) error {
	rows, err := tx.query(`SELECT id FROM users WHERE id IN (`+sub+`) ORDER BY id `+string(lockEnd), args...)
	if err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

// ---------------------------------------------------------------------------
// Reads

// scanner is a row of either kind (pgx.Row, pgx.Rows).
type scanner interface{ Scan(...any) error }

// one runs a single-row read outside any transaction and scans it with
// scan; errors name the operation what (mapErr: ErrNotFound for no row).
func one[T any](ctx context.Context, s *Store, what string, scan func(scanner) (T, error), query string, args ...any) (T, error) {
	var v T
	err := s.read(ctx, func(ctx context.Context) error {
		var err error
		v, err = scan(s.pool.QueryRow(ctx, query, args...))
		return err
	})
	return v, mapErr(what, err)
}

// all runs a read outside any transaction and scans every row with scan.
func all[T any](ctx context.Context, s *Store, what string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	var out []T
	err := s.read(ctx, func(ctx context.Context) error {
		out = nil
		rows, err := s.pool.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			v, err := scan(rows)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, mapErr(what, err)
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Errors

// pgCode is the SQLSTATE of a server error, "" for other errors.
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// mapErr translates errors into the storage sentinels as storage/sqlite
// does: a duplicate key is ErrConflict, a reference to a missing row (a
// user that does not exist) ErrNotFound, no row ErrNotFound, a transient
// failure or a statement timeout ErrBusy. Other errors are wrapped with op.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, storage.ErrBusy) {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	switch code := pgCode(err); {
	case code == "23505": // unique_violation
		return fmt.Errorf("postgres: %s: %w", op, storage.ErrConflict)
	case code == "23503": // foreign_key_violation
		return fmt.Errorf("postgres: %s: referenced row: %w", op, storage.ErrNotFound)
	case code == "57014": // query_canceled: statement_timeout, nothing committed
		return fmt.Errorf("postgres: %s: %w", op, errors.Join(storage.ErrBusy, err))
	}
	var unknown *commitUnknownError
	var callerDone *callerDoneError
	if !errors.As(err, &unknown) && !errors.As(err, &callerDone) && !errors.Is(err, context.Canceled) && transient(err) {
		return fmt.Errorf("postgres: %s: %w", op, errors.Join(storage.ErrBusy, err))
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: %s: %w", op, storage.ErrNotFound)
	}
	// Sentinels from our own logic pass through unwrapped so messages stay
	// short; errors.Is works either way.
	for _, e := range []error{storage.ErrNotFound, storage.ErrConflict, storage.ErrWrongState,
		storage.ErrReplay, storage.ErrReused} {
		if errors.Is(err, e) {
			return err
		}
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// ---------------------------------------------------------------------------
// Value encoding (as storage/sqlite)

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
		return nil, fmt.Errorf("postgres: corrupt string list %q: %w", s, err)
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
