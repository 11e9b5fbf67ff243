package postgres

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/totp-idp/idp/storage"
)

const linkCols = `digest, purpose, user_id, email, created_at, expires_at, used_at, tries`

func scanLink(sc scanner) (storage.Link, error) {
	var l storage.Link
	var created, expires, used int64
	err := sc.Scan(&l.Digest, &l.Purpose, &l.UserID, &l.Email, &created, &expires, &used, &l.Tries)
	l.CreatedAt, l.ExpiresAt, l.UsedAt = fromUnix(created), fromUnix(expires), fromUnix(used)
	return l, err
}

// IssueLink writes a link and its mail unless a limit refuses
// (storage.Store.IssueLink). The user's row lock and an advisory lock on
// the address make the count and the insert one decision across replicas.
func (s *Store) IssueLink(ctx context.Context, l storage.Link, m storage.Mail, lim storage.LinkLimit) error {
	if len(l.Digest) != 32 || l.Purpose == "" || l.UserID == "" || l.Email == "" {
		return errors.New("postgres: issue link: digest, purpose, user and address required")
	}
	err := s.write(ctx, func(tx *txn) error {
		// The user's row, then the address: the order of every writer of
		// a user's links.
		if found, err := lockUser(tx, l.UserID, lockOwn); err != nil || !found {
			if err == nil {
				err = storage.ErrNotFound
			}
			return err
		}
		if _, err := tx.exec(`SELECT pg_advisory_xact_lock(hashtextextended('link-to:' || $1 || ':' || lower($2), 0))`, l.Purpose, l.Email); err != nil {
			return err
		}
		created := unix(l.CreatedAt)
		var byUserAddress, byUser, byAddress int
		if err := tx.queryRow(`SELECT
			(SELECT COUNT(*) FROM mail_links WHERE user_id = $1 AND purpose = $2 AND lower(email) = lower($4) AND created_at > $3),
			(SELECT COUNT(*) FROM mail_links WHERE user_id = $1 AND purpose = $2 AND created_at > $6),
			(SELECT COUNT(*) FROM mail_links WHERE lower(email) = lower($4) AND purpose = $2 AND created_at > $5)`,
			l.UserID, l.Purpose, created-int64(lim.PerUser/time.Second), l.Email, created-int64(lim.AddressWindow/time.Second),
			created-int64(lim.UserWindow/time.Second)).Scan(&byUserAddress, &byUser, &byAddress); err != nil {
			return err
		}
		if lim.PerUser > 0 && byUserAddress > 0 || lim.UserMax > 0 && byUser >= lim.UserMax || lim.PerAddress > 0 && byAddress >= lim.PerAddress {
			return storage.ErrLimited
		}
		// One live link of a purpose per user: the newest.
		if _, err := tx.exec(`UPDATE mail_links SET used_at = $1 WHERE user_id = $2 AND purpose = $3 AND used_at = 0`,
			revokedAt(l.CreatedAt), l.UserID, l.Purpose); err != nil {
			return err
		}
		if _, err := tx.exec(`INSERT INTO mail_links (`+linkCols+`) VALUES ($1, $2, $3, $4, $5, $6, 0, 0)`,
			l.Digest, l.Purpose, l.UserID, l.Email, created, unix(l.ExpiresAt)); err != nil {
			return err
		}
		m.OncePer = 0 // the link's limits decided
		return insertMails(tx, []storage.Mail{m})
	})
	return mapErr("issue link", err)
}

// LinkByDigest returns a link, used or not.
func (s *Store) LinkByDigest(ctx context.Context, digest []byte) (storage.Link, error) {
	return one(ctx, s, "link", scanLink, `SELECT `+linkCols+` FROM mail_links WHERE digest = $1`, digest)
}

// UsersByVerifiedEmail lists the users whose verified address is email.
func (s *Store) UsersByVerifiedEmail(ctx context.Context, email string, limit int) ([]storage.User, error) {
	return all(ctx, s, "users by verified email", scanUser, `SELECT `+userCols+` FROM users
		WHERE lower(email) = lower($1) AND email_verified AND email <> '' ORDER BY created_at, id LIMIT $2`, email, max(limit, 1))
}

// liveLink reads, locked, the unused, unexpired link digest of purpose in
// tx (ErrNotFound otherwise).
func liveLink(tx *txn, digest []byte, purpose string, now time.Time) (storage.Link, error) {
	l, err := scanLink(tx.queryRow(`SELECT `+linkCols+` FROM mail_links WHERE digest = $1 AND purpose = $2 AND used_at = 0 AND expires_at > $3 FOR UPDATE`,
		digest, purpose, now.Unix()))
	if errors.Is(err, pgx.ErrNoRows) {
		return l, storage.ErrNotFound
	}
	return l, err
}

// VerifyEmail uses a verification link (storage.Store.VerifyEmail); an
// advisory lock on the address makes "no other account has it verified"
// hold across replicas.
func (s *Store) VerifyEmail(ctx context.Context, digest []byte, now time.Time) (storage.User, error) {
	var u storage.User
	err := s.write(ctx, func(tx *txn) error {
		// The user's row first, as every writer of its links takes it
		// (ResetPassword, IssueLink), then the address.
		var userID, email string
		if err := tx.queryRow(`SELECT user_id, email FROM mail_links WHERE digest = $1`, digest).Scan(&userID, &email); err != nil {
			return err // no row: ErrNotFound
		}
		if _, err := lockUser(tx, userID, lockEnd); err != nil {
			return err
		}
		if _, err := tx.exec(`SELECT pg_advisory_xact_lock(hashtextextended('verified:' || lower($1), 0))`, email); err != nil {
			return err
		}
		l, err := liveLink(tx, digest, storage.LinkVerifyEmail, now)
		if err != nil {
			return err
		}
		if u, err = scanUser(tx.queryRow(`SELECT `+userCols+` FROM users WHERE id = $1 FOR UPDATE`, l.UserID)); err != nil {
			return err
		}
		if u.Email != l.Email {
			return storage.ErrWrongState
		}
		var others int
		if err := tx.queryRow(`SELECT COUNT(*) FROM users WHERE lower(email) = lower($1) AND email_verified AND id <> $2`, l.Email, u.ID).Scan(&others); err != nil {
			return err
		}
		if others > 0 {
			return storage.ErrConflict
		}
		if _, err := tx.exec(`UPDATE users SET email_verified = true WHERE id = $1`, u.ID); err != nil {
			return err
		}
		u.EmailVerified = true
		_, err = tx.exec(`UPDATE mail_links SET used_at = $1 WHERE digest = $2`, revokedAt(now), digest)
		return err
	})
	return u, mapErr("verify email", err)
}

// ResetPassword uses a reset link (storage.Store.ResetPassword), under
// lockEnd on the user, the order of every ending.
func (s *Store) ResetPassword(ctx context.Context, r storage.PasswordReset, now time.Time) (storage.Ended, error) {
	if r.Hash == "" || (r.TOTPStep == 0) == (r.RecoveryCode == nil) {
		return storage.Ended{}, errors.New("postgres: reset password: a hash and one second factor required")
	}
	var e storage.Ended
	err := s.write(ctx, func(tx *txn) error {
		var disabled, changed int64
		var email string
		var verified bool
		if err := tx.queryRow(`SELECT disabled_at, password_changed_at, email, email_verified FROM users WHERE id = $1 FOR UPDATE`, r.UserID).Scan(&disabled, &changed, &email, &verified); err != nil {
			return err // no user: ErrNotFound
		}
		l, err := liveLink(tx, r.Link, storage.LinkResetPassword, now)
		if err != nil {
			return err
		}
		if l.UserID != r.UserID || changed >= unix(l.CreatedAt) || !strings.EqualFold(email, l.Email) || !verified {
			// Another account's link, one the password outlived (a change
			// in the link's own second too: times are kept in seconds), or
			// one sent to an address the account no longer has verified.
			return storage.ErrNotFound
		}
		if disabled != 0 {
			return storage.ErrWrongState
		}
		if r.TOTPStep != 0 {
			// The guarded UPDATE is the replay check, shared with sign-ins.
			n, err := tx.exec(`UPDATE totp_credentials SET last_step = $1 WHERE user_id = $2 AND confirmed AND last_step < $1`,
				r.TOTPStep, r.UserID)
			if err != nil {
				return err
			}
			if n == 0 {
				return storage.ErrReplay
			}
		} else if err := useRecoveryCode(tx, r.UserID, r.RecoveryCode, now); errors.Is(err, storage.ErrNotFound) {
			return storage.ErrNoCode
		} else if err != nil {
			return err
		}
		if e, err = setPassword(tx, r.UserID, storage.PasswordChange{Hash: r.Hash}, now); err != nil {
			return err
		}
		// The password counter starts again: a lock set by guesses at the
		// old password is lifted with it (issue 13, item 5).
		if _, err := tx.exec(`UPDATE attempts SET failures = 0, locked_until = 0, hard_locked = false, budget_level = 0,
			budget_at = 0, budget_spent = false, decay_at = 0 WHERE user_id = $1 AND factor = $2`, r.UserID, string(storage.FactorPassword)); err != nil {
			return err
		}
		_, err = tx.exec(`UPDATE mail_links SET used_at = $1 WHERE user_id = $2 AND used_at = 0`, revokedAt(now), r.UserID)
		return err
	})
	return e, mapErr("reset password", err)
}

// CountLinkTry counts a try with a reset link (storage.Store.CountLinkTry).
func (s *Store) CountLinkTry(ctx context.Context, digest []byte, max int, now time.Time) error {
	err := s.write(ctx, func(tx *txn) error {
		if _, err := liveLink(tx, digest, storage.LinkResetPassword, now); err != nil {
			return err
		}
		n, err := tx.exec(`UPDATE mail_links SET tries = tries + 1 WHERE digest = $1 AND tries < $2`, digest, max)
		if err == nil && n == 0 {
			return storage.ErrNotFound // its tries are spent
		}
		return err
	})
	return mapErr("count link try", err)
}
