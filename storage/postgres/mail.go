package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/totp-idp/idp/storage"
)

const mailCols = `id, user_id, kind, to_addr, subject, body, created_at, attempts, next_attempt_at, sent_at, failed_at, last_error`

func scanMail(sc scanner) (storage.Mail, error) {
	var m storage.Mail
	var created, next, sent, failed int64
	err := sc.Scan(&m.ID, &m.UserID, &m.Kind, &m.To, &m.Subject, &m.Body, &created, &m.Attempts, &next, &sent, &failed, &m.LastError)
	m.CreatedAt, m.NextAttemptAt, m.SentAt, m.FailedAt = fromUnix(created), fromUnix(next), fromUnix(sent), fromUnix(failed)
	return m, err
}

// insertMails writes mails in tx, each unless its ID exists: the mails a
// write's context carries (storage.WithMail), and QueueMail's.
func insertMails(tx *txn, mails []storage.Mail) error {
	for _, m := range mails {
		if m.ID == "" || m.To == "" || m.Kind == "" {
			return errors.New("postgres: mail without id, recipient or kind")
		}
		next := m.NextAttemptAt
		if next.IsZero() {
			next = m.CreatedAt
		}
		// since: with OncePer, a mail of the kind to the user created
		// after it stops this one (a since of the far future: none does).
		since := int64(1) << 62
		if m.OncePer > 0 {
			since = unix(m.CreatedAt.Add(-m.OncePer))
			// One decision at a time per user and kind, across replicas.
			if _, err := tx.exec(`SELECT pg_advisory_xact_lock(hashtextextended('outbox:' || $1 || ':' || $2, 0))`, m.UserID, m.Kind); err != nil {
				return err
			}
		}
		if _, err := tx.exec(`INSERT INTO outbox (id, user_id, kind, to_addr, subject, body, created_at, next_attempt_at)
			SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE NOT EXISTS
				(SELECT 1 FROM outbox WHERE user_id = $2 AND kind = $3 AND created_at > $9)
			ON CONFLICT (id) DO NOTHING`,
			m.ID, m.UserID, m.Kind, m.To, m.Subject, m.Body, unix(m.CreatedAt), unix(next), since); err != nil {
			return err
		}
	}
	return nil
}

// QueueMail writes m unless a mail with its ID exists (storage.Store).
func (s *Store) QueueMail(ctx context.Context, m storage.Mail) error {
	return mapErr("queue mail", s.write(ctx, func(tx *txn) error { return insertMails(tx, []storage.Mail{m}) }))
}

// ClaimMails leases up to limit due mails (storage.Store.ClaimMails):
// SKIP LOCKED lets replicas claim different mails at once, and the lease
// keeps a claimed mail from the others until it runs out.
func (s *Store) ClaimMails(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]storage.Mail, error) {
	var out []storage.Mail
	err := s.write(ctx, func(tx *txn) error {
		out = nil
		rows, err := tx.query(`UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1
			WHERE id IN (SELECT id FROM outbox WHERE sent_at = 0 AND failed_at = 0 AND next_attempt_at <= $2
				ORDER BY next_attempt_at, created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
			RETURNING `+mailCols, unix(now.Add(lease)), now.Unix(), max(limit, 1))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			m, err := scanMail(rows)
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return rows.Err()
	})
	return out, mapErr("claim mails", err)
}

// mailUpdate runs an update of one unsent mail; ErrNotFound when there is
// none.
func (s *Store) mailUpdate(ctx context.Context, what, query string, args ...any) error {
	n, err := s.exec(ctx, query, args...)
	if err != nil {
		return mapErr(what, err)
	}
	if n == 0 {
		return mapErr(what, storage.ErrNotFound)
	}
	return nil
}

// MailSent marks the mail sent (storage.Store.MailSent).
func (s *Store) MailSent(ctx context.Context, id string, now time.Time) error {
	return s.mailUpdate(ctx, "mail sent", `UPDATE outbox SET sent_at = $1, last_error = '' WHERE id = $2 AND sent_at = 0`, max(unix(now), 1), id)
}

// MailRetryAt records a failed attempt (storage.Store.MailRetryAt).
func (s *Store) MailRetryAt(ctx context.Context, id, lastError string, next time.Time) error {
	return s.mailUpdate(ctx, "mail retry", `UPDATE outbox SET next_attempt_at = $1, last_error = $2 WHERE id = $3 AND sent_at = 0`,
		unix(next), lastError, id)
}

// MailGaveUp marks the mail given up (storage.Store.MailGaveUp).
func (s *Store) MailGaveUp(ctx context.Context, id, lastError string, now time.Time) error {
	return s.mailUpdate(ctx, "mail gave up", `UPDATE outbox SET failed_at = $1, last_error = $2 WHERE id = $3 AND sent_at = 0`,
		max(unix(now), 1), lastError, id)
}

// Mails lists the outbox, newest first (storage.Store.Mails).
func (s *Store) Mails(ctx context.Context, f storage.MailFilter) ([]storage.Mail, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	where := `TRUE`
	switch {
	case f.Pending && f.Failed:
		where = `sent_at = 0`
	case f.Pending:
		where = `sent_at = 0 AND failed_at = 0`
	case f.Failed:
		where = `failed_at <> 0`
	}
	return all(ctx, s, "mails", scanMail, `SELECT `+mailCols+` FROM outbox WHERE `+where+` ORDER BY created_at DESC, id DESC LIMIT $1`, limit)
}

// RetryFailedMails makes every given-up mail due again (storage.Store).
func (s *Store) RetryFailedMails(ctx context.Context, now time.Time) (int, error) {
	n, err := s.exec(ctx, `UPDATE outbox SET failed_at = 0, attempts = 0, next_attempt_at = $1 WHERE failed_at <> 0 AND sent_at = 0`, unix(now))
	return int(n), mapErr("retry failed mails", err)
}
