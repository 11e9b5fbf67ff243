package postgres

import (
	"bytes"
	"context"
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
		if err := userExists(tx, userID, lockEnd); err != nil {
			return err
		}
		n, err := tx.exec(`UPDATE users SET enroll_pending_since = $1 WHERE id = $2`, max(now.Unix(), 1), userID)
		if err != nil {
			return err
		}
		if n == 0 {
			return storage.ErrNotFound
		}
		if _, err := tx.exec(`DELETE FROM totp_credentials WHERE user_id = $1`, userID); err != nil {
			return err
		}
		if _, err := tx.exec(`DELETE FROM recovery_codes WHERE user_id = $1`, userID); err != nil {
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
		return errors.New("postgres: set pending totp: empty secret")
	}
	q := `UPDATE auth_requests SET pending_totp = $1
		WHERE id = $2 AND stage = $3 AND user_id = $4 AND expires_at > $5
		AND NOT EXISTS (SELECT 1 FROM totp_credentials WHERE user_id = $4)`
	if !replace {
		q += ` AND pending_totp IS NULL`
	}
	return s.guarded(ctx, "set pending totp", id, &now, q, sealed, id, storage.StagePasswordOK, userID, now.Unix())
}

// ConfirmEnrollment activates the pending secret as cred and moves the
// request to enrolled, all in one transaction.
func (s *Store) ConfirmEnrollment(ctx context.Context, id string, cred storage.TOTPCredential, recoveryHashes [][]byte, now time.Time) error {
	if len(cred.Secret) == 0 || cred.UserID == "" {
		return errors.New("postgres: confirm enrollment: credential without user or secret")
	}
	err := s.write(ctx, func(tx *txn) error {
		// One enrollment of the user at a time: a second browser's
		// confirmation waits, then finds the credential and is refused
		// (ErrWrongState) by the NOT EXISTS below, as in sqlite.
		if _, err := lockUser(tx, cred.UserID, lockOwn); err != nil {
			return err
		}
		n, err := tx.exec(`UPDATE auth_requests SET stage = $1, pending_totp = NULL
			WHERE id = $2 AND stage = $3 AND user_id = $4 AND expires_at > $5 AND pending_totp IS NOT NULL
			AND NOT EXISTS (SELECT 1 FROM totp_credentials WHERE user_id = $4)
			AND NOT EXISTS (SELECT 1 FROM users WHERE id = $4 AND disabled_at <> 0)`,
			storage.StageEnrolled, id, storage.StagePasswordOK, cred.UserID, now.Unix())
		if err != nil {
			return err
		}
		if n == 0 {
			return classify(tx, id, &now)
		}
		if _, err := tx.exec(`INSERT INTO totp_credentials (user_id, secret, confirmed, last_step, created_at)
			VALUES ($1, $2, true, $3, $4)`, cred.UserID, cred.Secret, cred.LastStep, unix(now)); err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE users SET enroll_pending_since = 0 WHERE id = $1`, cred.UserID); err != nil {
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
	if _, err := tx.exec(`DELETE FROM recovery_codes WHERE user_id = $1`, userID); err != nil {
		return err
	}
	for _, h := range hashes {
		if len(h) == 0 {
			return errors.New("empty recovery code hash")
		}
	}
	if len(hashes) == 0 {
		return nil
	}
	// One statement for the whole set; a repeated hash is a primary key
	// violation (ErrConflict), as in sqlite.
	_, err := tx.exec(`INSERT INTO recovery_codes (user_id, code_hash, created_at)
		SELECT $1, h, $3 FROM unnest($2::bytea[]) AS h`, userID, hashes, unix(now))
	return err
}

// ReplaceRecoveryCodes invalidates the user's codes, stores new ones and
// ends everything the user is signed in with, in one transaction.
func (s *Store) ReplaceRecoveryCodes(ctx context.Context, userID string, hashes [][]byte, now time.Time) (storage.Ended, error) {
	var e storage.Ended
	err := s.write(ctx, func(tx *txn) error {
		if err := userExists(tx, userID, lockEnd); err != nil {
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
	return one(ctx, s, "recovery codes left", func(sc scanner) (int, error) {
		var n int
		err := sc.Scan(&n)
		return n, err
	}, `SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at = 0`, userID)
}

// CompleteRecovery uses one recovery code and completes the request.
func (s *Store) CompleteRecovery(ctx context.Context, id, userID string, codeHash []byte, now time.Time, amr []string, acr string) (int, error) {
	left := 0
	err := s.write(ctx, func(tx *txn) error {
		if _, err := lockUser(tx, userID, lockStep); err != nil {
			return err
		}
		stage, owner, err := tx.liveStage(id, now)
		if err != nil {
			return err
		}
		if stage != storage.StagePasswordOK || owner != userID {
			return storage.ErrWrongState
		}
		// A recovery code replaces a lost authenticator: without a
		// confirmed one there is nothing for it to replace.
		var confirmed int
		if err := tx.queryRow(`SELECT COUNT(*) FROM totp_credentials WHERE user_id = $1 AND confirmed`,
			userID).Scan(&confirmed); err != nil {
			return err
		}
		if confirmed == 0 {
			return storage.ErrWrongState
		}
		if err := useRecoveryCode(tx, userID, codeHash, now); err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE auth_requests SET stage = $1, auth_time = $2, amr = $3, acr = $4 WHERE id = $5`,
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

// useRecoveryCode consumes the user's unused recovery code codeHash and
// records the second factor's success; ErrNotFound when there is none.
// Exactly one row changes, or the code is wrong or used (docs/THREAT-MODEL.md
// R-S4): a concurrent use of the same code, on any replica, holds the row
// until it commits, and this UPDATE then finds used_at set.
func useRecoveryCode(tx *txn, userID string, codeHash []byte, now time.Time) error {
	n, err := tx.exec(`UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at = 0`,
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
	var left int
	err := tx.queryRow(`SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at = 0`, userID).Scan(&left)
	return left, err
}

// reencryptBatch is how many sealed values one UPDATE of ReencryptSecrets
// rewrites.
const reencryptBatch = 1000

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
// transaction; values fn returns unchanged are not written or counted. The
// rows are read FOR UPDATE, so no writer changes one between its read and
// its rewrite. The rewrites go in batches of reencryptBatch rows, and the
// transaction gets maintenanceTimeout instead of a request's: one
// statement per row did 60 000 credentials in 4.8 s here, close to
// attemptTimeout, and a key rotation that can never finish is worse than
// logins waiting on it (their lock_timeout turns the wait into ErrBusy).
func (s *Store) ReencryptSecrets(ctx context.Context, fn func(kind storage.SecretKind, id string, sealed []byte) ([]byte, error)) (int, error) {
	total := 0
	err := s.maintain(ctx, func(tx *txn) error {
		total = 0
		for _, c := range sealedColumns {
			q := fmt.Sprintf(`SELECT %s, %s FROM %s`, c.key, c.value, c.table)
			if c.where != "" {
				q += " WHERE " + c.where
			}
			rows, err := tx.query(q + " FOR UPDATE")
			if err != nil {
				return err
			}
			var keys []string
			var values [][]byte
			for rows.Next() {
				var k string
				var v []byte
				if err := rows.Scan(&k, &v); err != nil {
					rows.Close()
					return err
				}
				keys, values = append(keys, k), append(values, v)
			}
			if err := rows.Err(); err != nil {
				return err
			}
			var changedKeys []string
			var changed [][]byte
			for i, k := range keys {
				if c.kind == storage.SecretSetting && !strings.HasPrefix(k, storage.SealedSettingPrefix) {
					continue
				}
				nv, err := fn(c.kind, k, values[i])
				if err != nil {
					return fmt.Errorf("%s %s: %w", c.kind, k, err)
				}
				if !bytes.Equal(nv, values[i]) {
					changedKeys, changed = append(changedKeys, k), append(changed, nv)
				}
			}
			update := fmt.Sprintf(`UPDATE %[1]s SET %[3]s = u.v FROM unnest($1::text[], $2::bytea[]) AS u(k, v)
				WHERE %[1]s.%[2]s = u.k`, c.table, c.key, c.value)
			for lo := 0; lo < len(changedKeys); lo += reencryptBatch {
				hi := min(lo+reencryptBatch, len(changedKeys))
				n, err := tx.exec(update, changedKeys[lo:hi], changed[lo:hi])
				if err != nil {
					return err
				}
				total += int(n)
			}
		}
		return nil
	})
	if err != nil {
		return 0, mapErr("reencrypt secrets", err)
	}
	return total, nil
}
