package sqlite

import (
	"context"
	"errors"
	"time"

	"github.com/totp-idp/idp/storage"
)

// Remembered devices (storage.Device): the OWASP device cookie's
// server-side half, with its own password counter in the counter columns.

// RememberDevice stores d, forgets the device it renews (only when that is
// d.UserID's, whose CreatedAt d keeps) and the user's least recently used
// devices beyond maxPerUser, in one transaction.
func (s *Store) RememberDevice(ctx context.Context, d storage.Device, replaces []byte, maxPerUser int, now time.Time) error {
	if len(d.IDHash) == 0 || d.UserID == "" {
		return errors.New("sqlite: remember device: no id or user")
	}
	err := s.write(ctx, func(tx *txn) error {
		if err := userExists(tx, d.UserID); err != nil {
			return err
		}
		if len(d.Session) > 0 {
			if err := liveSessionOf(tx, d.Session, d.UserID, now); err != nil {
				return err // ended meanwhile: ErrNotFound
			}
		}
		created := unix(d.CreatedAt)
		if len(replaces) > 0 {
			row, err := tx.queryRow(`SELECT created_at FROM devices WHERE id_hash = ? AND user_id = ? AND expires_at > ?`,
				replaces, d.UserID, now.Unix())
			if err != nil {
				return err
			}
			var old int64
			if row.Scan(&old) == nil {
				created = old
				if _, err := tx.exec(`DELETE FROM devices WHERE id_hash = ?`, replaces); err != nil {
					return err
				}
			}
		}
		if _, err := tx.exec(`INSERT INTO devices (id_hash, user_id, created_at, last_used_at, expires_at, user_agent)
			VALUES (?, ?, ?, ?, ?, ?)`, d.IDHash, d.UserID, created, unix(d.LastUsedAt), unix(d.ExpiresAt), d.UserAgent); err != nil {
			return err
		}
		_, err := tx.exec(`DELETE FROM devices WHERE user_id = ? AND (expires_at <= ? OR id_hash NOT IN
			(SELECT id_hash FROM devices WHERE user_id = ? AND expires_at > ? ORDER BY last_used_at DESC, id_hash LIMIT ?))`,
			d.UserID, now.Unix(), d.UserID, now.Unix(), max(1, maxPerUser))
		return err
	})
	return mapErr("remember device", err)
}

// ClaimDeviceAttempt claims a password attempt on the device's own
// counter; the claim that reaches p.HardLimit forgets the device.
func (s *Store) ClaimDeviceAttempt(ctx context.Context, idHash []byte, userID string, now time.Time, p storage.LockPolicy) (storage.AttemptClaim, error) {
	var claim storage.AttemptClaim
	err := s.write(ctx, func(tx *txn) error {
		row, err := tx.queryRow(`SELECT `+counterColumns+` FROM devices WHERE id_hash = ? AND user_id = ? AND expires_at > ?`,
			idHash, userID, now.Unix())
		if err != nil {
			return err
		}
		c, found, err := scanCounter(row)
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
			_, err = tx.exec(`DELETE FROM devices WHERE id_hash = ?`, idHash)
			return err
		}
		_, err = tx.exec(`UPDATE devices SET failures = ?, locked_until = ?, hard_locked = ?, budget_level = ?, budget_at = ?,
			budget_spent = ?, decay_at = ?, claims = ?, last_failure_at = ? WHERE id_hash = ?`,
			next.Failures, next.LockedUntil, boolInt(next.HardLocked), next.BudgetLevel, next.BudgetAt,
			boolInt(next.BudgetSpent), next.DecayAt, next.Claims, next.ClaimAt, idHash)
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
		FROM devices WHERE user_id = ? AND expires_at > ? ORDER BY last_used_at DESC, id_hash`, userID, now.Unix())
}
