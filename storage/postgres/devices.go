package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/totp-idp/idp/storage"
)

// Remembered devices (storage.Device): the OWASP device cookie's
// server-side half, with its own password counter in the counter columns.

// RememberDevice stores d, forgets the device it renews (only when that is
// d.UserID's, whose CreatedAt d keeps) and the user's least recently used
// devices beyond maxPerUser, in one transaction.
func (s *Store) RememberDevice(ctx context.Context, d storage.Device, replaces []byte, maxPerUser int, now time.Time) error {
	if len(d.IDHash) == 0 || d.UserID == "" {
		return errors.New("postgres: remember device: no id or user")
	}
	err := s.write(ctx, func(tx *txn) error {
		// One RememberDevice of the user at a time, so that the pruning
		// below sees every device the user has (maxPerUser holds across
		// replicas), and none while the user's sign-ins are being ended.
		if err := userExists(tx, d.UserID, lockOwn); err != nil {
			return err
		}
		// Under the user's lock, which every ending takes first: an ending
		// either committed before (no session: nothing stored) or waits.
		if len(d.Session) > 0 {
			if err := sessionOf(tx, d.Session, d.UserID, now); err != nil {
				return err // ended meanwhile: ErrNotFound
			}
		}
		created := unix(d.CreatedAt)
		if len(replaces) > 0 {
			var old int64
			err := tx.queryRow(`SELECT created_at FROM devices WHERE id_hash = $1 AND user_id = $2 AND expires_at > $3 FOR UPDATE`,
				replaces, d.UserID, now.Unix()).Scan(&old)
			switch {
			case err == nil:
				created = old
				if _, err := tx.exec(`DELETE FROM devices WHERE id_hash = $1`, replaces); err != nil {
					return err
				}
			case !errors.Is(err, pgx.ErrNoRows):
				return err
			}
		}
		if _, err := tx.exec(`INSERT INTO devices (id_hash, user_id, created_at, last_used_at, expires_at, user_agent)
			VALUES ($1, $2, $3, $4, $5, $6)`, d.IDHash, d.UserID, created, unix(d.LastUsedAt), unix(d.ExpiresAt), d.UserAgent); err != nil {
			return err
		}
		_, err := tx.exec(`DELETE FROM devices WHERE user_id = $1 AND (expires_at <= $2 OR id_hash NOT IN
			(SELECT id_hash FROM devices WHERE user_id = $1 AND expires_at > $2 ORDER BY last_used_at DESC, id_hash LIMIT $3))`,
			d.UserID, now.Unix(), max(1, maxPerUser))
		return err
	})
	return mapErr("remember device", err)
}

// ClaimDeviceAttempt claims a password attempt on the device's own
// counter; the claim that reaches p.HardLimit forgets the device. The
// device's row lock is held from the read to the commit, so concurrent
// claims on it, from any replica, decide one after the other; one that
// waited for the claim that forgot it finds no device (ErrNotFound).
func (s *Store) ClaimDeviceAttempt(ctx context.Context, idHash []byte, userID string, now time.Time, p storage.LockPolicy) (storage.AttemptClaim, error) {
	var claim storage.AttemptClaim
	err := s.write(ctx, func(tx *txn) error {
		claim = storage.AttemptClaim{}
		c, found, err := scanCounter(tx.queryRow(`SELECT `+counterColumns+` FROM devices
			WHERE id_hash = $1 AND user_id = $2 AND expires_at > $3 FOR UPDATE`, idHash, userID, now.Unix()))
		if err != nil {
			return err
		}
		if !found {
			return storage.ErrNotFound
		}
		var next storage.Counter
		var changed bool
		claim, next, changed = p.Claim(c, now)
		switch {
		case !changed:
			return nil
		case claim.AtLimit:
			_, err = tx.exec(`DELETE FROM devices WHERE id_hash = $1`, idHash)
			return err
		}
		_, err = tx.exec(`UPDATE devices SET failures = $1, locked_until = $2, hard_locked = $3, budget_level = $4,
			budget_at = $5, budget_spent = $6, decay_at = $7, claims = $8, last_failure_at = $9 WHERE id_hash = $10`,
			next.Failures, next.LockedUntil, next.HardLocked, next.BudgetLevel, next.BudgetAt,
			next.BudgetSpent, next.DecayAt, next.Claims, next.ClaimAt, idHash)
		return err
	})
	if errors.Is(err, storage.ErrNotFound) {
		return storage.AttemptClaim{}, storage.ErrNotFound
	}
	return claim, mapErr("claim device attempt", err)
}

// Devices lists the user's live devices, most recently used first.
func (s *Store) Devices(ctx context.Context, userID string, now time.Time) ([]storage.Device, error) {
	return all(ctx, s, "devices", func(sc scanner) (storage.Device, error) {
		var d storage.Device
		var created, used, expires, locked int64
		err := sc.Scan(&d.IDHash, &d.UserID, &created, &used, &expires, &d.UserAgent, &d.Failures, &locked)
		d.CreatedAt, d.LastUsedAt, d.ExpiresAt, d.LockedUntil = fromUnix(created), fromUnix(used), fromUnix(expires), fromUnix(locked)
		return d, err
	}, `SELECT id_hash, user_id, created_at, last_used_at, expires_at, user_agent, failures, locked_until
		FROM devices WHERE user_id = $1 AND expires_at > $2 ORDER BY last_used_at DESC, id_hash`, userID, now.Unix())
}
