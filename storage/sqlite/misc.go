package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/totp-idp/idp/storage"
)

// ---------------------------------------------------------------------------
// Signing keys

// AddSigningKey inserts k, signing from k.ActivatesAt (at once when zero).
// With retireOthers the key not yet retired is retired at that activation
// and published until expireOldAt; without, k is inserted only if every
// key is retired (ErrConflict otherwise), so processes starting together
// create one key.
// WithdrawSigningKey retires the key now (or keeps an earlier retirement)
// and ends its publication now.
func (s *Store) WithdrawSigningKey(ctx context.Context, id string, now time.Time) error {
	n, err := s.exec(ctx, `UPDATE signing_keys SET
		retired_at = CASE WHEN retired_at = 0 OR retired_at > ? THEN ? ELSE retired_at END, expires_at = ?
		WHERE id = ?`, max(now.Unix(), 1), max(now.Unix(), 1), max(now.Unix(), 1), id)
	if err != nil {
		return mapErr("withdraw signing key", err)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: withdraw signing key %q: %w", id, storage.ErrNotFound)
	}
	return nil
}

func (s *Store) AddSigningKey(ctx context.Context, k storage.SigningKey, retireOthers bool, expireOldAt time.Time) error {
	activation := k.ActivatesAt
	if activation.IsZero() {
		activation = k.CreatedAt
	}
	err := s.write(ctx, func(tx *txn) error {
		if retireOthers {
			if _, err := tx.exec(`UPDATE signing_keys SET retired_at = ?, expires_at = ? WHERE retired_at = 0`,
				max(unix(activation), 1), unix(expireOldAt)); err != nil {
				return err
			}
		} else {
			row, err := tx.queryRow(`SELECT COUNT(*) FROM signing_keys WHERE retired_at = 0`)
			if err != nil {
				return err
			}
			var n int
			if err := row.Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return storage.ErrConflict
			}
		}
		// The newest key has neither retirement nor expiry.
		_, err := tx.exec(`INSERT INTO signing_keys (id, algorithm, private_key, public_jwk, created_at, activates_at, retired_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, 0, 0)`, k.ID, k.Algorithm, k.PrivateKey, k.PublicJWK, unix(k.CreatedAt), unix(k.ActivatesAt))
		return err
	})
	return mapErr("add signing key", err)
}

// SigningKeys lists the keys not retired (the active one, and a next one
// still waiting for its activation) and the retired keys still published
// (ExpiresAt > now), newest first.
func (s *Store) SigningKeys(ctx context.Context, now time.Time) ([]storage.SigningKey, error) {
	return all(ctx, s, "signing keys", func(sc scanner) (storage.SigningKey, error) {
		var k storage.SigningKey
		var created, activates, retired, exp int64
		err := sc.Scan(&k.ID, &k.Algorithm, &k.PrivateKey, &k.PublicJWK, &created, &activates, &retired, &exp)
		k.CreatedAt, k.ActivatesAt, k.RetiredAt, k.ExpiresAt = fromUnix(created), fromUnix(activates), fromUnix(retired), fromUnix(exp)
		return k, err
	}, `SELECT id, algorithm, private_key, public_jwk, created_at, activates_at, retired_at, expires_at
		FROM signing_keys WHERE retired_at = 0 OR expires_at > ?
		ORDER BY CASE WHEN retired_at = 0 THEN 0 ELSE 1 END, created_at DESC, retired_at DESC, id`, now.Unix())
}

// ---------------------------------------------------------------------------
// Settings

// PutSettingIfAbsent stores value under name unless a value exists, and
// returns the stored value (the first writer's). Settings are never
// updated, so the read after the insert sees the winner.
func (s *Store) PutSettingIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error) {
	if value == nil {
		value = []byte{}
	}
	var out []byte
	err := s.write(ctx, func(tx *txn) error {
		if _, err := tx.exec(`INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
			name, value); err != nil {
			return err
		}
		row, err := tx.queryRow(`SELECT value FROM settings WHERE name = ?`, name)
		if err != nil {
			return err
		}
		return row.Scan(&out)
	})
	if err != nil {
		return nil, mapErr("put setting", err)
	}
	return out, nil
}

// Setting returns the value stored under name, or ErrNotFound.
func (s *Store) Setting(ctx context.Context, name string) ([]byte, error) {
	row, err := s.queryRow(ctx, `SELECT value FROM settings WHERE name = ?`, name)
	if err != nil {
		return nil, mapErr("setting", err)
	}
	var out []byte
	if err := row.Scan(&out); err != nil {
		return nil, mapErr("setting", err)
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Audit trail

// AppendAudit appends e; the store assigns the id (e.ID is ignored). The
// table has no update path and one delete path, DeleteAuditBefore; the
// schema's triggers refuse every other update or delete.
func (s *Store) AppendAudit(ctx context.Context, e storage.AuditEvent) error {
	if e.Type == "" {
		return errors.New("sqlite: append audit: event without type")
	}
	_, err := s.exec(ctx, `INSERT INTO audit_events (time, type, user_id, username, client_id, client_ip, request_id, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		unix(e.Time), e.Type, e.UserID, e.Username, e.ClientID, e.ClientIP, e.RequestID, e.Detail)
	return mapErr("append audit", err)
}

// ListAudit returns the events matching f, oldest first (by id; newest first
// with f.Newest). A positive
// Limit returns at most that many: the first ones in that order.
func (s *Store) ListAudit(ctx context.Context, f storage.AuditFilter) ([]storage.AuditEvent, error) {
	// The WHERE clause is built from fixed fragments; values are bound.
	var where []string
	var args []any
	if f.UserID != "" {
		where = append(where, "user_id = ?")
		args = append(args, f.UserID)
	}
	if !f.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, f.Since.Unix())
	}
	q := `SELECT id, time, type, user_id, username, client_id, client_ip, request_id, detail FROM audit_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id"
	if f.Newest {
		q += " DESC"
	}
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	return all(ctx, s, "list audit", func(sc scanner) (storage.AuditEvent, error) {
		var e storage.AuditEvent
		var t int64
		err := sc.Scan(&e.ID, &t, &e.Type, &e.UserID, &e.Username, &e.ClientID, &e.ClientIP, &e.RequestID, &e.Detail)
		e.Time = fromUnix(t)
		return e, err
	}, q, args...)
}

// auditDeleteBatch is how many audit events one DeleteAuditBefore
// transaction deletes, so that a first prune of a large trail never holds
// the write lock for long.
const auditDeleteBatch = 5000

// DeleteAuditBefore deletes the events older than cutoff, oldest first, in
// transactions of at most auditDeleteBatch rows. Each transaction opens the
// schema's delete guard for its own cutoff and closes it again, so no
// other statement can delete from the trail.
func (s *Store) DeleteAuditBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	c := unix(cutoff)
	var total int64
	for {
		var n int64
		err := s.write(ctx, func(tx *txn) error {
			if _, err := tx.exec(`UPDATE audit_retention SET cutoff = ? WHERE id = 1`, c); err != nil {
				return err
			}
			var err error
			n, err = tx.exec(`DELETE FROM audit_events WHERE id IN
				(SELECT id FROM audit_events WHERE time < ? ORDER BY time, id LIMIT ?)`, c, auditDeleteBatch)
			if err != nil {
				return err
			}
			_, err = tx.exec(`UPDATE audit_retention SET cutoff = 0 WHERE id = 1`)
			return err
		})
		if err != nil {
			return total, mapErr("delete audit", err)
		}
		total += n
		if n < auditDeleteBatch {
			return total, nil
		}
	}
}

// ---------------------------------------------------------------------------
// Garbage collection

// GC deletes expired rows and returns how many: auth requests an hour after
// they expired (so a late replay of their code is still recognised), access
// and refresh tokens, sessions and remembered devices once expired, retired
// signing keys no longer published, and password counters once they are the
// same as none (storage.LockPolicy.ForgetAt). Audit events have their own retention
// (DeleteAuditBefore). Each table is its own short transaction so GC never
// holds the write lock for long.
func (s *Store) GC(ctx context.Context, now time.Time) (int64, error) {
	n := now.Unix()
	var total int64
	for _, d := range []struct {
		query string
		arg   int64
	}{
		{`DELETE FROM auth_requests WHERE expires_at <= ?`, n - int64(authRequestGrace/time.Second)},
		{`DELETE FROM auth_requests WHERE expires_at <= ? AND code_hash IS NULL`, n},
		{`DELETE FROM access_tokens WHERE expires_at <= ?`, n},
		{`DELETE FROM refresh_tokens WHERE expires_at <= ?`, n},
		{`DELETE FROM sessions WHERE expires_at <= ?`, n},
		{`DELETE FROM signing_keys WHERE retired_at <> 0 AND expires_at <= ?`, n},
		// Password counters of accounts and of unknown names go by one
		// rule, so that collecting them tells neither from the other.
		{`DELETE FROM unknown_attempts WHERE forget_at <= ?`, n},
		{`DELETE FROM attempts WHERE factor = 'password' AND forget_at <= ?`, n},
		{`DELETE FROM devices WHERE expires_at <= ?`, n},
		{`DELETE FROM outbox WHERE sent_at <> 0 AND sent_at <= ?`, n - int64(storage.MailRetention/time.Second)},
		{`DELETE FROM outbox WHERE failed_at <> 0 AND failed_at <= ?`, n - int64(storage.MailRetention/time.Second)},
		// A mail still pending after MailRetention was never going to be
		// sent: no sender ran (mail off while the operator's commands
		// queued notices); a sender gives up after a day.
		{`DELETE FROM outbox WHERE sent_at = 0 AND failed_at = 0 AND created_at <= ?`, n - int64(storage.MailRetention/time.Second)},
		{`DELETE FROM mail_links WHERE expires_at <= ?`, n - int64(storage.LinkRetention/time.Second)},
	} {
		c, err := s.exec(ctx, d.query, d.arg)
		if err != nil {
			return total, mapErr(fmt.Sprintf("gc (%s)", strings.Fields(d.query)[2]), err)
		}
		total += c
	}
	return total, nil
}
