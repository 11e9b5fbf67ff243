package sqlite

import (
	"context"
	"errors"
	"time"

	"github.com/totp-idp/idp/storage"
)

// SetPassword stores the new hash and ends what the old password may have
// opened (storage.Store.SetPassword), in one transaction.
func (s *Store) SetPassword(ctx context.Context, userID, hash string, mustChange bool, keep []byte, now time.Time) (storage.Ended, error) {
	if hash == "" {
		return storage.Ended{}, errors.New("sqlite: set password: empty hash")
	}
	var e storage.Ended
	err := s.write(ctx, func(tx *txn) error {
		n, err := tx.exec(`UPDATE users SET password_hash = ?, must_change_password = ?, password_changed_at = ? WHERE id = ?`,
			hash, boolInt(mustChange), unix(now), userID)
		if err != nil {
			return err
		}
		if n == 0 {
			return storage.ErrNotFound
		}
		if e, err = endUserExcept(tx, userID, keep, now); err != nil {
			return err
		}
		// The second factor's failures and budget start again.
		_, err = tx.exec(`UPDATE attempts SET failures = 0, locked_until = 0, hard_locked = 0, budget_level = 0,
			budget_at = 0, budget_spent = 0, decay_at = 0 WHERE user_id = ? AND factor = ?`, userID, string(storage.FactorTOTP))
		return err
	})
	return e, mapErr("set password", err)
}

// SetDisabled disables the account and ends its sign-ins, or enables it.
func (s *Store) SetDisabled(ctx context.Context, userID string, disabled bool, now time.Time) (storage.Ended, error) {
	var e storage.Ended
	err := s.write(ctx, func(tx *txn) error {
		at := int64(0)
		if disabled {
			at = max(now.Unix(), 1)
		}
		n, err := tx.exec(`UPDATE users SET disabled_at = ? WHERE id = ?`, at, userID)
		if err != nil {
			return err
		}
		if n == 0 {
			return storage.ErrNotFound
		}
		if !disabled {
			e = storage.Ended{}
			return nil
		}
		e, err = endUser(tx, userID, now)
		return err
	})
	return e, mapErr("set disabled", err)
}

// UpdateUser changes the profile fields set in up.
func (s *Store) UpdateUser(ctx context.Context, userID string, up storage.UserUpdate) error {
	err := s.write(ctx, func(tx *txn) error {
		n, err := tx.exec(`UPDATE users SET name = COALESCE(?, name), email = COALESCE(?, email),
			email_verified = COALESCE(?, email_verified) WHERE id = ?`,
			nullable(up.Name), nullable(up.Email), nullableBool(up.EmailVerified), userID)
		if err != nil {
			return err
		}
		if n == 0 {
			return storage.ErrNotFound
		}
		return nil
	})
	return mapErr("update user", err)
}

// Sessions lists the user's live SSO sessions, most recently seen first.
func (s *Store) Sessions(ctx context.Context, userID string, now time.Time) ([]storage.Session, error) {
	return all(ctx, s, "sessions", scanSession, `SELECT `+sessionCols+` FROM sessions
		WHERE user_id = ? AND expires_at > ? ORDER BY last_seen_at DESC, created_at DESC, id_hash`, userID, now.Unix())
}

// VerifySession records a fresh proof of the second factor in the session.
func (s *Store) VerifySession(ctx context.Context, idHash []byte, now time.Time) error {
	n, err := s.exec(ctx, `UPDATE sessions SET verified_at = ? WHERE id_hash = ? AND expires_at > ?`, unix(now), idHash, now.Unix())
	if err != nil {
		return mapErr("verify session", err)
	}
	if n == 0 {
		return mapErr("verify session", storage.ErrNotFound)
	}
	return nil
}

func nullable(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func nullableBool(p *bool) any {
	if p == nil {
		return nil
	}
	return boolInt(*p)
}
