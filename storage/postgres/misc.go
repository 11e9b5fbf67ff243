package postgres

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

// WithdrawSigningKey retires the key now (or keeps an earlier retirement)
// and ends its publication now.
func (s *Store) WithdrawSigningKey(ctx context.Context, id string, now time.Time) error {
	t := max(now.Unix(), 1)
	n, err := s.exec(ctx, `UPDATE signing_keys SET
		retired_at = CASE WHEN retired_at = 0 OR retired_at > $1 THEN $1 ELSE retired_at END, expires_at = $1
		WHERE id = $2`, t, id)
	if err != nil {
		return mapErr("withdraw signing key", err)
	}
	if n == 0 {
		return fmt.Errorf("postgres: withdraw signing key %q: %w", id, storage.ErrNotFound)
	}
	return nil
}

// AddSigningKey inserts k, signing from k.ActivatesAt (at once when zero).
// With retireOthers the key not yet retired is retired at that activation
// and published until expireOldAt; without, k is inserted only if every
// key is retired (ErrConflict otherwise), so processes starting together
// create one key.
//
// Additions run one at a time (an advisory lock): a rotation waits for
// another in flight and then retires the key that one added, as when
// sqlite's writers queue, instead of failing on the one-active index.
func (s *Store) AddSigningKey(ctx context.Context, k storage.SigningKey, retireOthers bool, expireOldAt time.Time) error {
	activation := k.ActivatesAt
	if activation.IsZero() {
		activation = k.CreatedAt
	}
	err := s.write(ctx, func(tx *txn) error {
		if _, err := tx.exec(`SELECT pg_advisory_xact_lock($1)`, signingKeyLock); err != nil {
			return err
		}
		if retireOthers {
			if _, err := tx.exec(`UPDATE signing_keys SET retired_at = $1, expires_at = $2 WHERE retired_at = 0`,
				max(unix(activation), 1), unix(expireOldAt)); err != nil {
				return err
			}
		} else {
			var n int
			if err := tx.queryRow(`SELECT COUNT(*) FROM signing_keys WHERE retired_at = 0`).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return storage.ErrConflict
			}
		}
		// The newest key has neither retirement nor expiry.
		_, err := tx.exec(`INSERT INTO signing_keys (id, algorithm, private_key, public_jwk, created_at, activates_at, retired_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, 0, 0)`, k.ID, k.Algorithm, k.PrivateKey, k.PublicJWK, unix(k.CreatedAt), unix(k.ActivatesAt))
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
		FROM signing_keys WHERE retired_at = 0 OR expires_at > $1
		ORDER BY CASE WHEN retired_at = 0 THEN 0 ELSE 1 END, created_at DESC, retired_at DESC, id COLLATE "C"`, now.Unix())
}

// ---------------------------------------------------------------------------
// Settings

// PutSettingIfAbsent stores value under name unless a value exists, and
// returns the stored value (the first writer's). Settings are never
// updated. A concurrent insert of the same name makes the INSERT wait for
// it and then do nothing; the SELECT, a new statement, sees the winner.
func (s *Store) PutSettingIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error) {
	if value == nil {
		value = []byte{}
	}
	var out []byte
	err := s.write(ctx, func(tx *txn) error {
		if _, err := tx.exec(`INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
			name, value); err != nil {
			return err
		}
		return tx.queryRow(`SELECT value FROM settings WHERE name = $1`, name).Scan(&out)
	})
	if err != nil {
		return nil, mapErr("put setting", err)
	}
	return out, nil
}

// Setting returns the value stored under name, or ErrNotFound.
func (s *Store) Setting(ctx context.Context, name string) ([]byte, error) {
	return one(ctx, s, "setting", func(sc scanner) ([]byte, error) {
		var out []byte
		err := sc.Scan(&out)
		return out, err
	}, `SELECT value FROM settings WHERE name = $1`, name)
}

// ---------------------------------------------------------------------------
// Audit trail

// AppendAudit appends e; the store assigns the id (e.ID is ignored). The
// table has no update path and one delete path, DeleteAuditBefore; the
// schema's triggers refuse every other update, delete or truncate.
func (s *Store) AppendAudit(ctx context.Context, e storage.AuditEvent) error {
	if e.Type == "" {
		return errors.New("postgres: append audit: event without type")
	}
	_, err := s.exec(ctx, `INSERT INTO audit_events (time, type, user_id, username, client_id, client_ip, request_id, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
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
		args = append(args, f.UserID)
		where = append(where, fmt.Sprintf("user_id = $%d", len(args)))
	}
	if !f.Since.IsZero() {
		args = append(args, f.Since.Unix())
		where = append(where, fmt.Sprintf("time >= $%d", len(args)))
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
		args = append(args, f.Limit)
		q += fmt.Sprintf(" LIMIT $%d", len(args))
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
// transaction deletes, so that a first prune of a large trail stays within
// statement_timeout and never holds its locks for long.
const auditDeleteBatch = 5000

// DeleteAuditBefore deletes the events older than cutoff, oldest first, in
// transactions of at most auditDeleteBatch rows. Each transaction opens the
// schema's delete guard for its own cutoff and closes it again, so no
// other statement can delete from the trail (other transactions see the
// committed cutoff 0 throughout).
//
// Only one replica prunes at a time (pg_try_advisory_xact_lock): while
// another one is pruning, this call deletes nothing and returns 0 (the
// other deletes the same events).
func (s *Store) DeleteAuditBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	if cutoff.IsZero() {
		return 0, nil // the contract: a zero cutoff deletes nothing
	}
	c := cutoff.Unix()
	var total int64
	for {
		var n int64
		var locked bool
		err := s.write(ctx, func(tx *txn) error {
			n = 0
			if err := tx.queryRow(`SELECT pg_try_advisory_xact_lock($1)`, auditPruneLock).Scan(&locked); err != nil || !locked {
				return err
			}
			if _, err := tx.exec(`UPDATE audit_retention SET cutoff = $1 WHERE id = 1`, c); err != nil {
				return err
			}
			var err error
			n, err = tx.exec(`DELETE FROM audit_events WHERE id IN
				(SELECT id FROM audit_events WHERE time < $1 ORDER BY time, id LIMIT $2)`, c, auditDeleteBatch)
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
		if !locked || n < auditDeleteBatch {
			return total, nil
		}
	}
}

// ---------------------------------------------------------------------------
// Garbage collection

// gcBatch is how many rows one GC transaction deletes from one table.
const gcBatch = 5000

// GC deletes expired rows and returns how many: auth requests an hour after
// they expired (so a late replay of their code is still recognised), access
// and refresh tokens, sessions and remembered devices once expired, retired
// signing keys no longer published, and password counters once they are the
// same as none (storage.LockPolicy.ForgetAt). Audit events have their own retention
// (DeleteAuditBefore). Each batch of each table is its own short
// transaction, as sqlite's GC is.
//
// Only one replica collects at a time: every transaction first takes
// pg_try_advisory_xact_lock, and when another replica holds it this GC
// stops there (that one is deleting the same rows). The condition is
// repeated outside the batch's subquery: a row that a concurrent
// transaction changed (a claim moving a counter's forget_at) is re-checked
// on its new version and kept.
func (s *Store) GC(ctx context.Context, now time.Time) (int64, error) {
	n := now.Unix()
	var total int64
	for _, d := range []struct {
		table, key, cond string
		arg              int64
	}{
		{"auth_requests", "id", `expires_at <= $1`, n - int64(authRequestGrace/time.Second)},
		{"auth_requests", "id", `expires_at <= $1 AND code_hash IS NULL`, n},
		{"access_tokens", "id", `expires_at <= $1`, n},
		{"refresh_tokens", "id", `expires_at <= $1`, n},
		{"sessions", "id_hash", `expires_at <= $1`, n},
		{"signing_keys", "id", `retired_at <> 0 AND expires_at <= $1`, n},
		// Password counters of accounts and of unknown names go by one
		// rule, so that collecting them tells neither from the other.
		{"unknown_attempts", "key", `forget_at <= $1`, n},
		{"attempts", "user_id, factor", `factor = 'password' AND forget_at <= $1`, n},
		{"devices", "id_hash", `expires_at <= $1`, n},
		{"outbox", "id", `sent_at <> 0 AND sent_at <= $1`, n - int64(storage.MailRetention/time.Second)},
		{"outbox", "id", `failed_at <> 0 AND failed_at <= $1`, n - int64(storage.MailRetention/time.Second)},
		// A mail still pending after MailRetention was never going to be
		// sent: no sender ran (mail off while the operator's commands
		// queued notices); a sender gives up after a day.
		{"outbox", "id", `sent_at = 0 AND failed_at = 0 AND created_at <= $1`, n - int64(storage.MailRetention/time.Second)},
		{"mail_links", "digest", `expires_at <= $1`, n - int64(storage.LinkRetention/time.Second)},
	} {
		q := fmt.Sprintf(`DELETE FROM %[1]s WHERE %[3]s AND (%[2]s) IN (SELECT %[2]s FROM %[1]s WHERE %[3]s LIMIT $2)`,
			d.table, d.key, d.cond)
		for {
			var c int64
			var locked bool
			err := s.write(ctx, func(tx *txn) error {
				c = 0
				if err := tx.queryRow(`SELECT pg_try_advisory_xact_lock($1)`, gcLock).Scan(&locked); err != nil || !locked {
					return err
				}
				var err error
				c, err = tx.exec(q, d.arg, gcBatch)
				return err
			})
			if err != nil {
				return total, mapErr(fmt.Sprintf("gc (%s)", d.table), err)
			}
			total += c
			if !locked {
				return total, nil
			}
			if c < gcBatch {
				break
			}
		}
	}
	return total, nil
}
