package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

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
		if _, err := tx.exec(`INSERT INTO users (`+userCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			u.ID, u.Username, u.Name, u.Email, boolInt(u.EmailVerified), u.PasswordHash, unix(u.CreatedAt),
			unix(u.EnrollPendingSince), u.NameKey, unix(u.DisabledAt), boolInt(u.MustChangePassword),
			unix(u.PasswordChangedAt)); err != nil {
			return err
		}
		if u.NameKey == "" {
			return nil
		}
		// The name's counter becomes the account's (storage.User.NameKey).
		if _, err := tx.exec(`INSERT INTO attempts (`+counterColumns+`, forget_at, user_id, factor)
			SELECT `+counterColumns+`, forget_at, ?, ? FROM unknown_attempts WHERE key = ?`,
			u.ID, string(storage.FactorPassword), u.NameKey); err != nil {
			return err
		}
		_, err := tx.exec(`DELETE FROM unknown_attempts WHERE key = ?`, u.NameKey)
		return err
	})
	return mapErr("create user", err)
}

// UserByID returns the user or ErrNotFound.
func (s *Store) UserByID(ctx context.Context, id string) (storage.User, error) {
	return one(ctx, s, "user by id", scanUser, `SELECT `+userCols+` FROM users WHERE id = ?`, id)
}

// UserByUsername returns the user with the canonical username or
// ErrNotFound.
func (s *Store) UserByUsername(ctx context.Context, username string) (storage.User, error) {
	return one(ctx, s, "user by username", scanUser, `SELECT `+userCols+` FROM users WHERE username = ?`, username)
}

// ListUsers returns all users ordered by username.
func (s *Store) ListUsers(ctx context.Context) ([]storage.User, error) {
	return all(ctx, s, "list users", scanUser, `SELECT `+userCols+` FROM users ORDER BY username`)
}

// DeleteUser removes the user; the schema's ON DELETE CASCADE removes the
// TOTP credential, attempt counters, auth requests, sessions and tokens in
// the same statement. ErrNotFound for an unknown id.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	err := s.write(ctx, func(tx *txn) error {
		// The account's password counter becomes its name's again
		// (storage.User.NameKey).
		if _, err := tx.exec(`INSERT INTO unknown_attempts (`+counterColumns+`, forget_at, key)
			SELECT a.failures, a.locked_until, a.hard_locked, a.budget_level, a.budget_at, a.budget_spent, a.decay_at,
				a.claims, a.last_failure_at, a.forget_at, u.name_key
			FROM attempts a JOIN users u ON u.id = a.user_id
			WHERE a.user_id = ? AND a.factor = ? AND u.name_key <> ''
			ON CONFLICT (key) DO UPDATE SET `+counterUpdate, id, string(storage.FactorPassword)); err != nil {
			return err
		}
		n, err := tx.exec(`DELETE FROM users WHERE id = ?`, id)
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
	n, err := s.exec(ctx, `UPDATE users SET password_hash = ? WHERE id = ?`, hash, userID)
	if err != nil {
		return mapErr("set password hash", err)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: set password hash: %w", storage.ErrNotFound)
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
		if _, err := tx.exec(`INSERT INTO totp_credentials (user_id, secret, confirmed, last_step, created_at)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, confirmed = excluded.confirmed,
				last_step = excluded.last_step, created_at = excluded.created_at`,
			c.UserID, secret, boolInt(c.Confirmed), c.LastStep, unix(c.CreatedAt)); err != nil {
			return err
		}
		if !c.Confirmed {
			return nil
		}
		_, err := tx.exec(`UPDATE users SET enroll_pending_since = 0 WHERE id = ?`, c.UserID)
		return err
	})
	return mapErr("put totp", err)
}

// TOTPByUser returns the user's TOTP credential or ErrNotFound.
func (s *Store) TOTPByUser(ctx context.Context, userID string) (storage.TOTPCredential, error) {
	row, err := s.queryRow(ctx, `SELECT user_id, secret, confirmed, last_step, created_at, generation
		FROM totp_credentials WHERE user_id = ?`, userID)
	if err != nil {
		return storage.TOTPCredential{}, mapErr("totp by user", err)
	}
	var c storage.TOTPCredential
	var created int64
	err = row.Scan(&c.UserID, &c.Secret, &c.Confirmed, &c.LastStep, &created, &c.Generation)
	c.CreatedAt = fromUnix(created)
	return c, mapErr("totp by user", err)
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
		return storage.AttemptClaim{}, errors.New("sqlite: claim unknown attempt: empty key")
	}
	c, err := s.claim(ctx, unknownAttemptsTable, now, p, key)
	return c, mapErr("claim unknown attempt", err)
}

// counterTable names the statements of one table of failure counters.
type counterTable struct {
	read, upsert string
}

// counterColumns are a counter's columns in every counter table, in the
// order scanCounter reads them.
const counterColumns = `failures, locked_until, hard_locked, budget_level, budget_at, budget_spent, decay_at,
	claims, last_failure_at`

var (
	attemptsTable = counterTable{
		read: `SELECT ` + counterColumns + ` FROM attempts WHERE user_id = ? AND factor = ?`,
		upsert: `INSERT INTO attempts (` + counterColumns + `, forget_at, user_id, factor)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (user_id, factor) DO UPDATE SET ` + counterUpdate,
	}
	unknownAttemptsTable = counterTable{
		read: `SELECT ` + counterColumns + ` FROM unknown_attempts WHERE key = ?`,
		upsert: `INSERT INTO unknown_attempts (` + counterColumns + `, forget_at, key)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET ` + counterUpdate,
	}
)

const counterUpdate = `failures = excluded.failures,
	locked_until = excluded.locked_until, hard_locked = excluded.hard_locked,
	budget_level = excluded.budget_level, budget_at = excluded.budget_at,
	budget_spent = excluded.budget_spent, decay_at = excluded.decay_at, claims = excluded.claims,
	last_failure_at = excluded.last_failure_at, forget_at = excluded.forget_at`

// scanCounter reads counterColumns; no row is the empty counter.
func scanCounter(row *sql.Row) (storage.Counter, bool, error) {
	var c storage.Counter
	err := row.Scan(&c.Failures, &c.LockedUntil, &c.HardLocked, &c.BudgetLevel, &c.BudgetAt, &c.BudgetSpent, &c.DecayAt,
		&c.Claims, &c.ClaimAt)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.Counter{}, false, nil
	}
	return c, err == nil, err
}

// counterArgs are next's values for counterColumns and forget_at.
func counterArgs(p storage.LockPolicy, next storage.Counter) []any {
	return []any{next.Failures, next.LockedUntil, boolInt(next.HardLocked), next.BudgetLevel, next.BudgetAt,
		boolInt(next.BudgetSpent), next.DecayAt, next.Claims, next.ClaimAt, p.ForgetAt(next)}
}

// claim reads the counter keyed by key in t and stores the guard's
// decision (storage.LockPolicy.Claim, shared by every backend).
func (s *Store) claim(ctx context.Context, t counterTable, now time.Time, p storage.LockPolicy, key ...any) (storage.AttemptClaim, error) {
	// Cheap refusal path: a locked factor is refused from a plain read,
	// without the write lock. Refusing on a slightly stale read is safe:
	// locks only ever end by time or by an explicit reset.
	row, err := s.queryRow(ctx, t.read, key...)
	if err != nil {
		return storage.AttemptClaim{}, err
	}
	c, _, err := scanCounter(row)
	if err != nil {
		return storage.AttemptClaim{}, err
	}
	if p.Refused(c, now) {
		claim, _, _ := p.Claim(c, now)
		return claim, nil
	}

	var claim storage.AttemptClaim
	err = s.write(ctx, func(tx *txn) error {
		// Re-read under the write lock: this is the decision that counts.
		row, err := tx.queryRow(t.read, key...)
		if err != nil {
			return err
		}
		c, _, err := scanCounter(row)
		if err != nil {
			return err
		}
		var next storage.Counter
		var changed bool
		claim, next, changed = p.Claim(c, now)
		if !changed {
			return nil
		}
		_, err = tx.exec(t.upsert, append(counterArgs(p, next), key...)...)
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

// succeeded stores fn of the factor's counter with the success time.
func succeeded(tx *txn, userID string, f storage.Factor, now time.Time, fn func(storage.Counter) storage.Counter) error {
	row, err := tx.queryRow(attemptsTable.read, userID, string(f))
	if err != nil {
		return err
	}
	c, found, err := scanCounter(row)
	if err != nil || !found {
		return err
	}
	n := fn(c)
	_, err = tx.exec(`UPDATE attempts SET failures = ?, locked_until = ?, hard_locked = ?, budget_level = ?, budget_at = ?,
		budget_spent = ?, decay_at = ?, last_success_at = ? WHERE user_id = ? AND factor = ?`,
		n.Failures, n.LockedUntil, boolInt(n.HardLocked), n.BudgetLevel, n.BudgetAt, boolInt(n.BudgetSpent), n.DecayAt,
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
	rows, err := s.query(ctx, `SELECT user_id, factor, failures, locked_until, hard_locked, last_failure_at, last_success_at,
		budget_level, budget_at, budget_spent FROM attempts WHERE user_id = ? ORDER BY factor`, userID)
	if err != nil {
		return nil, mapErr("attempt states", err)
	}
	defer rows.Close()
	var out []storage.AttemptState
	for rows.Next() {
		var a storage.AttemptState
		var factor string
		var until, lastFail, lastOK, budgetAt int64
		if err := rows.Scan(&a.UserID, &factor, &a.Failures, &until, &a.HardLocked, &lastFail, &lastOK,
			&a.BudgetLevel, &budgetAt, &a.BudgetSpent); err != nil {
			return nil, mapErr("attempt states", err)
		}
		a.Factor = storage.Factor(factor)
		a.LockedUntil, a.LastFailureAt, a.LastSuccessAt = fromUnix(until), fromUnix(lastFail), fromUnix(lastOK)
		a.BudgetAt = fromUnix(budgetAt)
		out = append(out, a)
	}
	return out, mapErr("attempt states", rows.Err())
}

// Unlock clears every lock and failure count of the user (operator action).
func (s *Store) Unlock(ctx context.Context, userID string) error {
	err := s.write(ctx, func(tx *txn) error {
		clear := `SET failures = 0, locked_until = 0, hard_locked = 0, budget_level = 0, budget_at = 0,
			budget_spent = 0, decay_at = 0 WHERE user_id = ?`
		if _, err := tx.exec(`UPDATE attempts `+clear, userID); err != nil {
			return err
		}
		_, err := tx.exec(`UPDATE devices `+clear, userID)
		return err
	})
	return mapErr("unlock", err)
}
