package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/totp-idp/idp/storage"
)

// SetPassword stores the new hash and ends what the old password may have
// opened (storage.Store.SetPassword), in one transaction.
func (s *Store) SetPassword(ctx context.Context, userID string, c storage.PasswordChange, now time.Time) (storage.Ended, error) {
	if c.Hash == "" {
		return storage.Ended{}, errors.New("sqlite: set password: empty hash")
	}
	var e storage.Ended
	err := s.write(ctx, func(tx *txn) error {
		var err error
		e, err = setPassword(tx, userID, c, now)
		return err
	})
	return e, mapErr("set password", err)
}

// setPassword is SetPassword's change inside tx (ResetPassword's too).
func setPassword(tx *txn, userID string, c storage.PasswordChange, now time.Time) (storage.Ended, error) {
	var e storage.Ended
	err := func() error {
		row, err := tx.queryRow(`SELECT password_hash, disabled_at FROM users WHERE id = ?`, userID)
		if err != nil {
			return err
		}
		var current string
		var disabled int64
		if err := row.Scan(&current, &disabled); err != nil {
			return err // no row: ErrNotFound
		}
		if c.OldHash != "" && (current != c.OldHash || disabled != 0) {
			return storage.ErrWrongState
		}
		if c.Keep != nil {
			if err := keptSession(tx, c.Keep, userID, now); err != nil {
				return err
			}
		}
		if _, err := tx.exec(`UPDATE users SET password_hash = ?, must_change_password = ?, password_changed_at = ? WHERE id = ?`,
			c.Hash, boolInt(c.MustChange), unix(now), userID); err != nil {
			return err
		}
		if e, err = endUserExcept(tx, userID, c.Keep, c.KeepDevice, now); err != nil {
			return err
		}
		// The second factor's failures and budget start again.
		_, err = tx.exec(`UPDATE attempts SET failures = 0, locked_until = 0, hard_locked = 0, budget_level = 0,
			budget_at = 0, budget_spent = 0, decay_at = 0 WHERE user_id = ? AND factor = ?`, userID, string(storage.FactorTOTP))
		return err
	}()
	return e, err
}

// SetDisabled disables the account and ends its sign-ins, or enables it.
func (s *Store) SetDisabled(ctx context.Context, userID string, disabled bool, now time.Time) (storage.Ended, error) {
	var e storage.Ended
	err := s.write(ctx, func(tx *txn) error {
		row, err := tx.queryRow(`SELECT disabled_at FROM users WHERE id = ?`, userID)
		if err != nil {
			return err
		}
		var was int64
		if err := row.Scan(&was); err != nil {
			return err // no user: ErrNotFound
		}
		if !disabled && was == 0 {
			// Already enabled: nothing was made while disabled, and the
			// sign-ins in progress go on (review of issue 12, B-F6).
			return nil
		}
		// Disabling again keeps the first time.
		at := was
		if !disabled {
			at = 0
		} else if at == 0 {
			at = max(now.Unix(), 1)
		}
		if _, err := tx.exec(`UPDATE users SET disabled_at = ? WHERE id = ?`, at, userID); err != nil {
			return err
		}
		if !disabled {
			// A sign-in that proved its factors while the account was
			// disabled does not complete now (review of issue 12, F8).
			e = storage.Ended{}
			e.SignIns, err = cancelSignIns(tx, now, `user_id = ?`, userID)
			return err
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
		if up.Email != nil || up.EmailVerified != nil {
			// A reset link went to the address as it was: any change of
			// it, or of its verification, voids the link, even a change
			// back (review I, F1). used_at 1: voided, at no use.
			_, err = tx.exec(`UPDATE mail_links SET used_at = 1 WHERE user_id = ? AND purpose = ? AND used_at = 0`, userID, storage.LinkResetPassword)
		}
		return err
	})
	return mapErr("update user", err)
}

// Sessions lists the user's live SSO sessions, most recently seen first.
func (s *Store) Sessions(ctx context.Context, userID string, now time.Time) ([]storage.Session, error) {
	return all(ctx, s, "sessions", scanSession, `SELECT `+sessionCols+` FROM sessions
		WHERE user_id = ? AND expires_at > ? ORDER BY last_seen_at DESC, created_at DESC, id_hash`, userID, now.Unix())
}

// ReverifyTOTP records a fresh TOTP proof in the session
// (storage.Store.ReverifyTOTP), in one transaction.
func (s *Store) ReverifyTOTP(ctx context.Context, idHash []byte, userID string, step int64, now time.Time) error {
	err := s.write(ctx, func(tx *txn) error {
		if err := liveSessionOf(tx, idHash, userID, now); err != nil {
			return err
		}
		// The guarded UPDATE is the replay check, shared with sign-ins.
		n, err := tx.exec(`UPDATE totp_credentials SET last_step = ? WHERE user_id = ? AND confirmed = 1 AND last_step < ?`,
			step, userID, step)
		if err != nil {
			return err
		}
		if n == 0 {
			row, err := tx.queryRow(`SELECT 1 FROM totp_credentials WHERE user_id = ? AND confirmed = 1`, userID)
			if err != nil {
				return err
			}
			var found int
			if err := row.Scan(&found); err != nil {
				return err // no credential: ErrNotFound
			}
			return storage.ErrReplay
		}
		if err := resetAttempt(tx, userID, storage.FactorTOTP, now); err != nil {
			return err
		}
		_, err = tx.exec(`UPDATE sessions SET verified_at = ?, reauth_failures = MAX(reauth_failures - 1, 0) WHERE id_hash = ?`, unix(now), idHash)
		return err
	})
	return mapErr("reverify totp", err)
}

// ReverifyRecovery records a fresh proof with a recovery code, consumed
// (storage.Store.ReverifyRecovery).
func (s *Store) ReverifyRecovery(ctx context.Context, idHash []byte, userID string, codeHash []byte, now time.Time) (int, error) {
	left := 0
	err := s.write(ctx, func(tx *txn) error {
		if err := liveSessionOf(tx, idHash, userID, now); err != nil {
			return err
		}
		if err := useRecoveryCode(tx, userID, codeHash, now); err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE sessions SET verified_at = ?, reauth_failures = MAX(reauth_failures - 1, 0) WHERE id_hash = ?`, unix(now), idHash); err != nil {
			return err
		}
		var err error
		left, err = recoveryCodesLeft(tx, userID)
		return err
	})
	return left, mapErr("reverify recovery", err)
}

// keptSession is ErrWrongState unless keep, the session a user's own
// change keeps, is still a live session of theirs.
func keptSession(tx *txn, keep []byte, userID string, now time.Time) error {
	if err := liveSessionOf(tx, keep, userID, now); errors.Is(err, sql.ErrNoRows) {
		return storage.ErrWrongState
	} else if err != nil {
		return err
	}
	return nil
}

// liveSessionOf is ErrNotFound unless idHash is a live session of userID.
func liveSessionOf(tx *txn, idHash []byte, userID string, now time.Time) error {
	row, err := tx.queryRow(`SELECT 1 FROM sessions WHERE id_hash = ? AND user_id = ? AND expires_at > ?`, idHash, userID, now.Unix())
	if err != nil {
		return err
	}
	var one int
	return row.Scan(&one) // no row: ErrNotFound
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

// RenewRecoveryCodes replaces the user's codes from the session keep
// (storage.Store.RenewRecoveryCodes).
func (s *Store) RenewRecoveryCodes(ctx context.Context, userID string, hashes [][]byte, keep []byte, generation int64, now time.Time) (storage.Ended, error) {
	var e storage.Ended
	err := s.write(ctx, func(tx *txn) error {
		if err := keptSession(tx, keep, userID, now); err != nil {
			return err
		}
		n, err := tx.exec(`UPDATE totp_credentials SET generation = generation + 1
			WHERE user_id = ? AND confirmed = 1 AND generation = ?`, userID, generation)
		if err != nil {
			return err
		}
		if n == 0 {
			return storage.ErrWrongState // no authenticator, or another change won
		}
		if err := replaceRecovery(tx, userID, hashes, now); err != nil {
			return err
		}
		e, err = endUserExcept(tx, userID, keep, nil, now)
		return err
	})
	return e, mapErr("renew recovery codes", err)
}

// ReplaceTOTP replaces the user's authenticator from the session keep
// (storage.Store.ReplaceTOTP).
func (s *Store) ReplaceTOTP(ctx context.Context, cred storage.TOTPCredential, recoveryHashes [][]byte, keep []byte, now time.Time) (storage.Ended, error) {
	if len(cred.Secret) == 0 || cred.UserID == "" {
		return storage.Ended{}, errors.New("sqlite: replace totp: credential without user or secret")
	}
	var e storage.Ended
	err := s.write(ctx, func(tx *txn) error {
		if err := keptSession(tx, keep, cred.UserID, now); err != nil {
			return err
		}
		n, err := tx.exec(`DELETE FROM totp_credentials WHERE user_id = ? AND confirmed = 1 AND generation = ?`, cred.UserID, cred.Generation)
		if err != nil {
			return err
		}
		if n == 0 {
			return storage.ErrWrongState // another replacement or renewal won
		}
		if _, err := tx.exec(`INSERT INTO totp_credentials (user_id, secret, confirmed, last_step, created_at, generation) VALUES (?, ?, 1, ?, ?, ?)`,
			cred.UserID, cred.Secret, cred.LastStep, unix(now), cred.Generation+1); err != nil {
			return err
		}
		if err := replaceRecovery(tx, cred.UserID, recoveryHashes, now); err != nil {
			return err
		}
		if err := resetAttempt(tx, cred.UserID, storage.FactorTOTP, now); err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE sessions SET auth_time = ?, verified_at = ?, reauth_failures = MAX(reauth_failures - 1, 0) WHERE id_hash = ?`, unix(now), unix(now), keep); err != nil {
			return err
		}
		e, err = endUserExcept(tx, cred.UserID, keep, nil, now)
		return err
	})
	return e, mapErr("replace totp", err)
}

// CountReauthFailure counts a wrong code proven again in the live session
// idHash (storage.Store.CountReauthFailure).
func (s *Store) CountReauthFailure(ctx context.Context, idHash []byte, now time.Time) (int, error) {
	var n int
	err := s.write(ctx, func(tx *txn) error {
		row, err := tx.queryRow(`UPDATE sessions SET reauth_failures = reauth_failures + 1
			WHERE id_hash = ? AND expires_at > ? RETURNING reauth_failures`, idHash, now.Unix())
		if err != nil {
			return err
		}
		return row.Scan(&n) // no live session: ErrNotFound
	})
	return n, mapErr("count reauth failure", err)
}

// ReturnReauthTry takes back one try of the session idHash
// (storage.Store.ReturnReauthTry).
func (s *Store) ReturnReauthTry(ctx context.Context, idHash []byte) error {
	err := s.write(ctx, func(tx *txn) error {
		_, err := tx.exec(`UPDATE sessions SET reauth_failures = MAX(reauth_failures - 1, 0) WHERE id_hash = ?`, idHash)
		return err
	})
	return mapErr("return reauth try", err)
}
