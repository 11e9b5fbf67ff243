package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/totp-idp/idp/storage"
)

const userCols = `id, username, name, email, email_verified, password_hash, created_at, enroll_pending_since, name_key,
	disabled_at, must_change_password, password_changed_at`

func scanUser(sc scanner) (storage.User, error) {
	var u storage.User
	var created, pending, disabled, changed int64
	err := sc.Scan(&u.ID, &u.Username, &u.Name, &u.Email, &u.EmailVerified, &u.PasswordHash, &created, &pending, &u.NameKey,
		&disabled, &u.MustChangePassword, &changed)
	u.CreatedAt, u.EnrollPendingSince = fromUnix(created), fromUnix(pending)
	u.DisabledAt, u.PasswordChangedAt = fromUnix(disabled), fromUnix(changed)
	return u, err
}

// CreateUser inserts u; ErrConflict when the id or username exists.
func (s *Store) CreateUser(ctx context.Context, u storage.User) error {
	err := s.write(ctx, func(tx *txn) error {
		if _, err := tx.exec(`INSERT INTO users (`+userCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			u.ID, u.Username, u.Name, u.Email, u.EmailVerified, u.PasswordHash, unix(u.CreatedAt),
			unix(u.EnrollPendingSince), u.NameKey, unix(u.DisabledAt), u.MustChangePassword, unix(u.PasswordChangedAt)); err != nil {
			return err
		}
		if u.NameKey == "" {
			return nil
		}
		// The name's counter becomes the account's (storage.User.NameKey).
		// DELETE … RETURNING takes the counter's row lock: a claim on the
		// name in flight commits first and its count moves; a later one
		// finds the row gone and starts the name's counter anew, as after
		// this transaction in sqlite.
		_, err := tx.exec(`WITH moved AS (DELETE FROM unknown_attempts WHERE key = $3
				RETURNING `+counterColumns+`, forget_at)
			INSERT INTO attempts (`+counterColumns+`, forget_at, user_id, factor)
			SELECT `+counterColumns+`, forget_at, $1, $2 FROM moved`,
			u.ID, string(storage.FactorPassword), u.NameKey)
		return err
	})
	return mapErr("create user", err)
}

// UserByID returns the user or ErrNotFound.
func (s *Store) UserByID(ctx context.Context, id string) (storage.User, error) {
	return one(ctx, s, "user by id", scanUser, `SELECT `+userCols+` FROM users WHERE id = $1`, id)
}

// UserByUsername returns the user with the canonical username or
// ErrNotFound.
func (s *Store) UserByUsername(ctx context.Context, username string) (storage.User, error) {
	return one(ctx, s, "user by username", scanUser, `SELECT `+userCols+` FROM users WHERE username = $1`, username)
}

// ListUsers returns all users ordered by username, in byte order (COLLATE
// "C", sqlite's BINARY) whatever the database's collation.
func (s *Store) ListUsers(ctx context.Context) ([]storage.User, error) {
	return all(ctx, s, "list users", scanUser, `SELECT `+userCols+` FROM users ORDER BY username COLLATE "C"`)
}

// DeleteUser removes the user; the schema's ON DELETE CASCADE removes the
// TOTP credential, attempt counters, auth requests, sessions, devices and
// tokens in the same statement. ErrNotFound for an unknown id.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	err := s.write(ctx, func(tx *txn) error {
		found, err := lockUser(tx, id, lockEnd)
		if err != nil {
			return err
		}
		if !found {
			return storage.ErrNotFound
		}
		// The account's password counter becomes its name's again
		// (storage.User.NameKey). FOR UPDATE OF a waits for a claim in
		// flight on it, so the name gets the count that claim left.
		if _, err := tx.exec(`INSERT INTO unknown_attempts (`+counterColumns+`, forget_at, key)
			SELECT a.failures, a.locked_until, a.hard_locked, a.budget_level, a.budget_at, a.budget_spent, a.decay_at,
				a.claims, a.last_failure_at, a.forget_at, u.name_key
			FROM attempts a JOIN users u ON u.id = a.user_id
			WHERE a.user_id = $1 AND a.factor = $2 AND u.name_key <> ''
			FOR UPDATE OF a
			ON CONFLICT (key) DO UPDATE SET `+counterUpdate, id, string(storage.FactorPassword)); err != nil {
			return err
		}
		n, err := tx.exec(`DELETE FROM users WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if n == 0 {
			return storage.ErrNotFound
		}
		return nil
	})
	return mapErr("delete user", err)
}

// SetPasswordHash replaces the user's password hash; ErrNotFound for an
// unknown user.
func (s *Store) SetPasswordHash(ctx context.Context, userID, hash string) error {
	n, err := s.exec(ctx, `UPDATE users SET password_hash = $1 WHERE id = $2`, hash, userID)
	if err != nil {
		return mapErr("set password hash", err)
	}
	if n == 0 {
		return fmt.Errorf("postgres: set password hash: %w", storage.ErrNotFound)
	}
	return nil
}

// PutTOTP stores the user's TOTP credential, replacing an existing one
// (re-enrollment); a confirmed one ends the wait for enrollment. ErrNotFound
// when the user does not exist.
func (s *Store) PutTOTP(ctx context.Context, c storage.TOTPCredential) error {
	secret := c.Secret
	if secret == nil {
		secret = []byte{} // NOT NULL column
	}
	err := s.write(ctx, func(tx *txn) error {
		// One change of the user's credential at a time (ConfirmEnrollment
		// inserts one too), as sqlite's single writer has it.
		if found, err := lockUser(tx, c.UserID, lockOwn); err != nil {
			return err
		} else if !found {
			return storage.ErrNotFound
		}
		if _, err := tx.exec(`INSERT INTO totp_credentials (user_id, secret, confirmed, last_step, created_at)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, confirmed = excluded.confirmed,
				last_step = excluded.last_step, created_at = excluded.created_at`,
			c.UserID, secret, c.Confirmed, c.LastStep, unix(c.CreatedAt)); err != nil {
			return err
		}
		if !c.Confirmed {
			return nil
		}
		_, err := tx.exec(`UPDATE users SET enroll_pending_since = 0 WHERE id = $1`, c.UserID)
		return err
	})
	return mapErr("put totp", err)
}

// TOTPByUser returns the user's TOTP credential or ErrNotFound.
func (s *Store) TOTPByUser(ctx context.Context, userID string) (storage.TOTPCredential, error) {
	return one(ctx, s, "totp by user", func(sc scanner) (storage.TOTPCredential, error) {
		var c storage.TOTPCredential
		var created int64
		err := sc.Scan(&c.UserID, &c.Secret, &c.Confirmed, &c.LastStep, &created, &c.Generation)
		c.CreatedAt = fromUnix(created)
		return c, err
	}, `SELECT user_id, secret, confirmed, last_step, created_at, generation FROM totp_credentials WHERE user_id = $1`, userID)
}

// ---------------------------------------------------------------------------
// Attempt guard

// ClaimAttempt refuses while the factor is locked; otherwise it counts the
// attempt as a failure, setting the next lock per p, before the caller
// verifies anything. A refused claim changes nothing.
//
// A lock ends when now reaches locked_until (whole seconds). Under a
// policy without Decay (the second factor) a hard lock (HardLimit reached)
// refuses regardless of time until Unlock or a success, with MaxLock as a
// Retry-After hint; a decaying counter (the password) has none and refuses
// at HardLimit until a failure decays (storage.LockPolicy). The user must
// exist (ErrNotFound).
func (s *Store) ClaimAttempt(ctx context.Context, userID string, f storage.Factor, now time.Time, p storage.LockPolicy) (storage.AttemptClaim, error) {
	c, err := s.claim(ctx, attemptsTable, now, p, userID, string(f))
	return c, mapErr("claim attempt", err)
}

// ClaimUnknownAttempt is ClaimAttempt for a username without an account,
// keyed by key.
func (s *Store) ClaimUnknownAttempt(ctx context.Context, key string, now time.Time, p storage.LockPolicy) (storage.AttemptClaim, error) {
	if key == "" {
		return storage.AttemptClaim{}, errors.New("postgres: claim unknown attempt: empty key")
	}
	c, err := s.claim(ctx, unknownAttemptsTable, now, p, key)
	return c, mapErr("claim unknown attempt", err)
}

// counterTable names the statements of one table of failure counters; the
// key columns are the last arguments of each.
type counterTable struct {
	// ensure inserts the empty counter unless there is one: a row that
	// does not exist cannot be locked, and two claims that both found none
	// would both count from zero.
	ensure string
	// read reads counterColumns; lock is read FOR UPDATE.
	read, lock string
	// update stores counterArgs.
	update string
}

// counterColumns are a counter's columns in every counter table, in the
// order scanCounter reads them.
const counterColumns = `failures, locked_until, hard_locked, budget_level, budget_at, budget_spent, decay_at,
	claims, last_failure_at`

// counterSet assigns counterArgs ($1…$10).
const counterSet = `failures = $1, locked_until = $2, hard_locked = $3, budget_level = $4, budget_at = $5,
	budget_spent = $6, decay_at = $7, claims = $8, last_failure_at = $9, forget_at = $10`

var (
	attemptsTable = counterTable{
		ensure: `INSERT INTO attempts (user_id, factor) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		read:   `SELECT ` + counterColumns + ` FROM attempts WHERE user_id = $1 AND factor = $2`,
		lock:   `SELECT ` + counterColumns + ` FROM attempts WHERE user_id = $1 AND factor = $2 FOR UPDATE`,
		update: `UPDATE attempts SET ` + counterSet + ` WHERE user_id = $11 AND factor = $12`,
	}
	unknownAttemptsTable = counterTable{
		ensure: `INSERT INTO unknown_attempts (key) VALUES ($1) ON CONFLICT DO NOTHING`,
		read:   `SELECT ` + counterColumns + ` FROM unknown_attempts WHERE key = $1`,
		lock:   `SELECT ` + counterColumns + ` FROM unknown_attempts WHERE key = $1 FOR UPDATE`,
		update: `UPDATE unknown_attempts SET ` + counterSet + ` WHERE key = $11`,
	}
)

// counterUpdate is the ON CONFLICT assignment of a whole counter.
const counterUpdate = `failures = excluded.failures,
	locked_until = excluded.locked_until, hard_locked = excluded.hard_locked,
	budget_level = excluded.budget_level, budget_at = excluded.budget_at,
	budget_spent = excluded.budget_spent, decay_at = excluded.decay_at, claims = excluded.claims,
	last_failure_at = excluded.last_failure_at, forget_at = excluded.forget_at`

// scanCounter reads counterColumns; no row is the empty counter.
func scanCounter(row pgx.Row) (storage.Counter, bool, error) {
	var c storage.Counter
	err := row.Scan(&c.Failures, &c.LockedUntil, &c.HardLocked, &c.BudgetLevel, &c.BudgetAt, &c.BudgetSpent, &c.DecayAt,
		&c.Claims, &c.ClaimAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Counter{}, false, nil
	}
	return c, err == nil, err
}

// counterArgs are next's values for counterColumns and forget_at.
func counterArgs(p storage.LockPolicy, next storage.Counter) []any {
	return []any{next.Failures, next.LockedUntil, next.HardLocked, next.BudgetLevel, next.BudgetAt,
		next.BudgetSpent, next.DecayAt, next.Claims, next.ClaimAt, p.ForgetAt(next)}
}

// claim reads the counter keyed by key in t and stores the guard's
// decision (storage.LockPolicy.Claim, shared by every backend), in one
// transaction that holds the counter's row lock from the read to the
// commit: concurrent claims, from this process or another, queue on it and
// each decides on what the one before it wrote.
func (s *Store) claim(ctx context.Context, t counterTable, now time.Time, p storage.LockPolicy, key ...any) (storage.AttemptClaim, error) {
	// Cheap refusal path: a locked factor is refused from a plain read,
	// without a transaction. Refusing on a slightly stale read is safe:
	// locks only ever end by time or by an explicit reset.
	var c storage.Counter
	err := s.read(ctx, func(ctx context.Context) error {
		var err error
		c, _, err = scanCounter(s.pool.QueryRow(ctx, t.read, key...))
		return err
	})
	if err != nil {
		return storage.AttemptClaim{}, err
	}
	if p.Refused(c, now) {
		claim, _, _ := p.Claim(c, now)
		return claim, nil
	}

	var claim storage.AttemptClaim
	err = s.write(ctx, func(tx *txn) error {
		// For an account, the insert fails on the foreign key when the
		// user does not exist (ErrNotFound).
		if _, err := tx.exec(t.ensure, key...); err != nil {
			return err
		}
		c, found, err := scanCounter(tx.queryRow(t.lock, key...))
		if err != nil {
			return err
		}
		if !found {
			// Deleted between the two statements (GC forgot it, the name
			// moved to a new account): insert it again.
			return errRestart
		}
		var next storage.Counter
		var changed bool
		claim, next, changed = p.Claim(c, now)
		if !changed {
			return nil
		}
		_, err = tx.exec(t.update, append(counterArgs(p, next), key...)...)
		return err
	})
	if err != nil {
		return storage.AttemptClaim{}, err
	}
	return claim, nil
}

// resetAttempt records a success of the second factor inside a completing
// transaction (storage.Counter.Succeeded): the consecutive failures and
// their locks end (hard lock included: the attempt that reached HardLimit
// may itself succeed); the failure budget gives back only this attempt's
// own claim. No row means nothing to reset.
func resetAttempt(tx *txn, userID string, f storage.Factor, now time.Time) error {
	return succeeded(tx, userID, f, now, func(c storage.Counter) storage.Counter { return c.Succeeded() })
}

// succeeded stores fn of the factor's counter, read under its row lock,
// with the success time.
func succeeded(tx *txn, userID string, f storage.Factor, now time.Time, fn func(storage.Counter) storage.Counter) error {
	c, found, err := scanCounter(tx.queryRow(attemptsTable.lock, userID, string(f)))
	if err != nil || !found {
		return err
	}
	n := fn(c)
	_, err = tx.exec(`UPDATE attempts SET failures = $1, locked_until = $2, hard_locked = $3, budget_level = $4,
		budget_at = $5, budget_spent = $6, decay_at = $7, last_success_at = $8 WHERE user_id = $9 AND factor = $10`,
		n.Failures, n.LockedUntil, n.HardLocked, n.BudgetLevel, n.BudgetAt, n.BudgetSpent, n.DecayAt,
		unix(now), userID, string(f))
	return err
}

// AttemptSucceeded gives back the claim of a right attempt
// (storage.LockPolicy.Succeeded).
func (s *Store) AttemptSucceeded(ctx context.Context, userID string, f storage.Factor, claim storage.AttemptClaim, now time.Time, p storage.LockPolicy) error {
	err := s.write(ctx, func(tx *txn) error {
		return succeeded(tx, userID, f, now, func(c storage.Counter) storage.Counter { return p.Succeeded(c, claim, now) })
	})
	return mapErr("attempt succeeded", err)
}

// AttemptStates lists the user's guard rows ordered by factor.
func (s *Store) AttemptStates(ctx context.Context, userID string) ([]storage.AttemptState, error) {
	return all(ctx, s, "attempt states", func(sc scanner) (storage.AttemptState, error) {
		var a storage.AttemptState
		var factor string
		var until, lastFail, lastOK, budgetAt int64
		err := sc.Scan(&a.UserID, &factor, &a.Failures, &until, &a.HardLocked, &lastFail, &lastOK,
			&a.BudgetLevel, &budgetAt, &a.BudgetSpent)
		a.Factor = storage.Factor(factor)
		a.LockedUntil, a.LastFailureAt, a.LastSuccessAt = fromUnix(until), fromUnix(lastFail), fromUnix(lastOK)
		a.BudgetAt = fromUnix(budgetAt)
		return a, err
	}, `SELECT user_id, factor, failures, locked_until, hard_locked, last_failure_at, last_success_at,
		budget_level, budget_at, budget_spent FROM attempts WHERE user_id = $1 ORDER BY factor COLLATE "C"`, userID)
}

// Unlock clears every lock and failure count of the user (operator action).
func (s *Store) Unlock(ctx context.Context, userID string) error {
	err := s.write(ctx, func(tx *txn) error {
		clear := `SET failures = 0, locked_until = 0, hard_locked = false, budget_level = 0, budget_at = 0,
			budget_spent = false, decay_at = 0 WHERE user_id = $1`
		if _, err := tx.exec(`UPDATE attempts `+clear, userID); err != nil {
			return err
		}
		_, err := tx.exec(`UPDATE devices `+clear, userID)
		return err
	})
	return mapErr("unlock", err)
}
