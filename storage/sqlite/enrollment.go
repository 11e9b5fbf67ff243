package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/totp-idp/idp/storage"
)

// DeleteTOTP removes the user's TOTP credential and recovery codes, starts
// the user's wait for enrollment at now and ends everything the user is
// signed in with, in one transaction.
func (s *Store) DeleteTOTP(ctx context.Context, userID string, now time.Time) (storage.Ended, error) {
	var e storage.Ended
	err := s.write(ctx, func(tx *txn) error {
		n, err := tx.exec(`UPDATE users SET enroll_pending_since = ? WHERE id = ?`, max(now.Unix(), 1), userID)
		if err != nil {
			return err
		}
		if n == 0 {
			return storage.ErrNotFound
		}
		if _, err := tx.exec(`DELETE FROM totp_credentials WHERE user_id = ?`, userID); err != nil {
			return err
		}
		_, err = tx.exec(`DELETE FROM recovery_codes WHERE user_id = ?`, userID)
		if err != nil {
			return err
		}
		e, err = endUser(tx, userID, now)
		return err
	})
	return e, mapErr("delete totp", err)
}

// SetPendingTOTP stores a sealed secret for enrollment on a live request in
// password_ok for a user without a TOTP credential.
func (s *Store) SetPendingTOTP(ctx context.Context, id, userID string, sealed []byte, replace bool, now time.Time) error {
	if len(sealed) == 0 {
		return errors.New("sqlite: set pending totp: empty secret")
	}
	q := `UPDATE auth_requests SET pending_totp = ?
		WHERE id = ? AND stage = ? AND user_id = ? AND expires_at > ?
		AND NOT EXISTS (SELECT 1 FROM totp_credentials WHERE user_id = ?)`
	if !replace {
		q += ` AND pending_totp IS NULL`
	}
	return s.guarded(ctx, "set pending totp", id, &now, q, sealed, id, storage.StagePasswordOK, userID, now.Unix(), userID)
}

// ConfirmEnrollment activates the pending secret as cred and moves the
// request to enrolled, all in one transaction.
func (s *Store) ConfirmEnrollment(ctx context.Context, id string, cred storage.TOTPCredential, recoveryHashes [][]byte, now time.Time) error {
	if len(cred.Secret) == 0 || cred.UserID == "" {
		return errors.New("sqlite: confirm enrollment: credential without user or secret")
	}
	err := s.write(ctx, func(tx *txn) error {
		n, err := tx.exec(`UPDATE auth_requests SET stage = ?, pending_totp = NULL
			WHERE id = ? AND stage = ? AND user_id = ? AND expires_at > ? AND pending_totp IS NOT NULL
			AND NOT EXISTS (SELECT 1 FROM totp_credentials WHERE user_id = ?)
			AND NOT EXISTS (SELECT 1 FROM users WHERE id = ? AND disabled_at <> 0)`,
			storage.StageEnrolled, id, storage.StagePasswordOK, cred.UserID, now.Unix(), cred.UserID, cred.UserID)
		if err != nil {
			return err
		}
		if n == 0 {
			return classify(tx, id, &now)
		}
		if _, err := tx.exec(`INSERT INTO totp_credentials (user_id, secret, confirmed, last_step, created_at)
			VALUES (?, ?, 1, ?, ?)`, cred.UserID, cred.Secret, cred.LastStep, unix(now)); err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE users SET enroll_pending_since = 0 WHERE id = ?`, cred.UserID); err != nil {
			return err
		}
		if err := replaceRecovery(tx, cred.UserID, recoveryHashes, now); err != nil {
			return err
		}
		return resetAttempt(tx, cred.UserID, storage.FactorTOTP, now)
	})
	return mapErr("confirm enrollment", err)
}

func replaceRecovery(tx *txn, userID string, hashes [][]byte, now time.Time) error {
	if _, err := tx.exec(`DELETE FROM recovery_codes WHERE user_id = ?`, userID); err != nil {
		return err
	}
	for _, h := range hashes {
		if len(h) == 0 {
			return errors.New("empty recovery code hash")
		}
		if _, err := tx.exec(`INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (?, ?, ?)`,
			userID, h, unix(now)); err != nil {
			return err
		}
	}
	return nil
}

// ReplaceRecoveryCodes invalidates the user's codes, stores new ones and
// ends everything the user is signed in with, in one transaction.
func (s *Store) ReplaceRecoveryCodes(ctx context.Context, userID string, hashes [][]byte, now time.Time) (storage.Ended, error) {
	var e storage.Ended
	err := s.write(ctx, func(tx *txn) error {
		if err := userExists(tx, userID); err != nil {
			return err
		}
		if err := replaceRecovery(tx, userID, hashes, now); err != nil {
			return err
		}
		var err error
		e, err = endUser(tx, userID, now)
		return err
	})
	return e, mapErr("replace recovery codes", err)
}

// RecoveryCodesLeft counts the user's unused codes.
func (s *Store) RecoveryCodesLeft(ctx context.Context, userID string) (int, error) {
	row, err := s.queryRow(ctx, `SELECT COUNT(*) FROM recovery_codes WHERE user_id = ? AND used_at = 0`, userID)
	if err != nil {
		return 0, mapErr("recovery codes left", err)
	}
	var n int
	if err := row.Scan(&n); err != nil {
		return 0, mapErr("recovery codes left", err)
	}
	return n, nil
}

// CompleteRecovery uses one recovery code and completes the request.
func (s *Store) CompleteRecovery(ctx context.Context, id, userID string, codeHash []byte, now time.Time, amr []string, acr string) (int, error) {
	left := 0
	err := s.write(ctx, func(tx *txn) error {
		stage, owner, err := tx.liveStage(id, now)
		if err != nil {
			return err
		}
		if stage != storage.StagePasswordOK || owner != userID {
			return storage.ErrWrongState
		}
		// A recovery code replaces a lost authenticator: without a
		// confirmed one there is nothing for it to replace.
		row, err := tx.queryRow(`SELECT COUNT(*) FROM totp_credentials WHERE user_id = ? AND confirmed = 1`, userID)
		if err != nil {
			return err
		}
		var confirmed int
		if err := row.Scan(&confirmed); err != nil {
			return err
		}
		if confirmed == 0 {
			return storage.ErrWrongState
		}
		if err := useRecoveryCode(tx, userID, codeHash, now); err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE auth_requests SET stage = ?, auth_time = ?, amr = ?, acr = ? WHERE id = ?`,
			storage.StageDone, unix(now), list(amr), acr, id); err != nil {
			return err
		}
		left, err = recoveryCodesLeft(tx, userID)
		return err
	})
	if err != nil {
		return 0, mapErr("complete recovery", err)
	}
	return left, nil
}

// sealedColumns are the places sealed values live: table, key column,
// value column, kind, and an extra WHERE condition.
var sealedColumns = []struct {
	table, key, value string
	kind              storage.SecretKind
	where             string
}{
	{"totp_credentials", "user_id", "secret", storage.SecretTOTP, ""},
	{"auth_requests", "id", "pending_totp", storage.SecretPendingTOTP, "pending_totp IS NOT NULL"},
	{"signing_keys", "id", "private_key", storage.SecretSigningKey, ""},
	{"settings", "name", "value", storage.SecretSetting, "name LIKE '" + storage.SealedSettingPrefix + "%'"},
	{"outbox", "id", "body", storage.SecretMail, ""},
}

// ReencryptSecrets rewrites every sealed value through fn in one
// transaction; values fn returns unchanged are not written or counted.
func (s *Store) ReencryptSecrets(ctx context.Context, fn func(kind storage.SecretKind, id string, sealed []byte) ([]byte, error)) (int, error) {
	total := 0
	err := s.write(ctx, func(tx *txn) error {
		total = 0
		for _, c := range sealedColumns {
			q := fmt.Sprintf(`SELECT %s, %s FROM %s`, c.key, c.value, c.table)
			if c.where != "" {
				q += " WHERE " + c.where
			}
			rows, err := tx.tx.QueryContext(ctx, q)
			if err != nil {
				return err
			}
			type kv struct {
				k string
				v []byte
			}
			var all []kv
			for rows.Next() {
				var r kv
				if err := rows.Scan(&r.k, &r.v); err != nil {
					rows.Close()
					return err
				}
				all = append(all, r)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, r := range all {
				if c.kind == storage.SecretSetting && !strings.HasPrefix(r.k, storage.SealedSettingPrefix) {
					continue
				}
				nv, err := fn(c.kind, r.k, r.v)
				if err != nil {
					return fmt.Errorf("%s %s: %w", c.kind, r.k, err)
				}
				if bytes.Equal(nv, r.v) {
					continue
				}
				if _, err := tx.tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET %s = ? WHERE %s = ?`, c.table, c.value, c.key), nv, r.k); err != nil {
					return err
				}
				total++
			}
		}
		return nil
	})
	if errors.Is(err, sql.ErrNoRows) {
		err = storage.ErrNotFound
	}
	if err != nil {
		return 0, mapErr("reencrypt secrets", err)
	}
	return total, nil
}

// useRecoveryCode consumes the user's unused recovery code codeHash and
// records the second factor's success; ErrNotFound when there is none.
// Exactly one row changes, or the code is wrong or used
// (docs/THREAT-MODEL.md R-S4).
func useRecoveryCode(tx *txn, userID string, codeHash []byte, now time.Time) error {
	n, err := tx.exec(`UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_hash = ? AND used_at = 0`,
		revokedAt(now), userID, codeHash)
	if err != nil {
		return err
	}
	if n != 1 {
		return storage.ErrNotFound
	}
	return resetAttempt(tx, userID, storage.FactorTOTP, now)
}

// recoveryCodesLeft counts the user's unused recovery codes.
func recoveryCodesLeft(tx *txn, userID string) (int, error) {
	row, err := tx.queryRow(`SELECT COUNT(*) FROM recovery_codes WHERE user_id = ? AND used_at = 0`, userID)
	if err != nil {
		return 0, err
	}
	var left int
	err = row.Scan(&left)
	return left, err
}
