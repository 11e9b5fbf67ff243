package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/totp-idp/idp/storage"
)

// ---------------------------------------------------------------------------
// Access tokens

const accessTokenCols = `id, client_id, COALESCE(user_id, ''), scopes, audience, auth_request_id, refresh_token_id,
	created_at, expires_at, revoked_at, session_hash`

func scanAccessToken(sc scanner) (storage.AccessToken, error) {
	var t storage.AccessToken
	var scopes, aud string
	var created, exp, revoked int64
	if err := sc.Scan(&t.ID, &t.ClientID, &t.UserID, &scopes, &aud, &t.AuthRequestID, &t.RefreshTokenID,
		&created, &exp, &revoked, &t.SessionHash); err != nil {
		return t, err
	}
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = fromUnix(created), fromUnix(exp), fromUnix(revoked)
	var err error
	if t.Scopes, err = unlist(scopes); err != nil {
		return t, err
	}
	t.Audience, err = unlist(aud)
	return t, err
}

// requestSession is the SSO session of auth request id as its row says now
// (ok false for an unknown id), or storage.ErrReused when the request's
// tokens were revoked (its code reused, its user's sessions or the session
// it came through ended) before these are stored: a revocation that ran
// between the code's redemption and the insert must still reach them. The
// session is the row's, not the caller's earlier read: a ReplaceSession in
// between moved it, and tokens tagged with the old one would escape every
// logout.
func requestSession(tx *txn, id, userID string) (session []byte, ok bool, err error) {
	if id == "" {
		return nil, false, nil
	}
	// The user (lockStep) first, then the request row (FOR SHARE): the
	// order every revocation takes them in (lockEnd on the users, then
	// the marker), so a revocation either committed before this reads the
	// marker or waits for these tokens and then revokes them.
	if userID != "" {
		if _, err := lockUser(tx, userID, lockStep); err != nil {
			return nil, false, err
		}
	}
	var at int64
	if err := tx.queryRow(`SELECT tokens_revoked_at, session_hash FROM auth_requests WHERE id = $1 FOR SHARE`, id).Scan(&at, &session); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, false, nil
		}
		return nil, false, err
	}
	if at != 0 {
		return nil, false, storage.ErrReused
	}
	return session, true, nil
}

func insertAccessToken(tx *txn, t storage.AccessToken) error {
	_, err := tx.exec(`INSERT INTO access_tokens (id, client_id, user_id, scopes, audience, auth_request_id,
		refresh_token_id, created_at, expires_at, revoked_at, session_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		t.ID, t.ClientID, nullStr(t.UserID), list(t.Scopes), list(t.Audience), t.AuthRequestID,
		t.RefreshTokenID, unix(t.CreatedAt), unix(t.ExpiresAt), unix(t.RevokedAt), nullBytes(t.SessionHash))
	return err
}

// CreateAccessToken inserts t; ErrConflict when the id exists, ErrNotFound
// when t.UserID names no user.
func (s *Store) CreateAccessToken(ctx context.Context, t storage.AccessToken) error {
	err := s.write(ctx, func(tx *txn) error {
		sess, ok, err := requestSession(tx, t.AuthRequestID, t.UserID)
		if err != nil {
			return err
		}
		if ok {
			t.SessionHash = sess
		}
		return insertAccessToken(tx, t)
	})
	return mapErr("create access token", err)
}

// AccessTokenByID returns a live token; ErrNotFound for unknown, expired
// (ExpiresAt <= now) or revoked tokens.
func (s *Store) AccessTokenByID(ctx context.Context, id string, now time.Time) (storage.AccessToken, error) {
	t, err := one(ctx, s, "access token by id", scanAccessToken, `SELECT `+accessTokenCols+` FROM access_tokens WHERE id = $1`, id)
	if err != nil {
		return storage.AccessToken{}, err
	}
	if !t.RevokedAt.IsZero() || unix(t.ExpiresAt) <= now.Unix() {
		return storage.AccessToken{}, fmt.Errorf("postgres: access token by id: expired or revoked: %w", storage.ErrNotFound)
	}
	return t, nil
}

// RevokeAccessToken revokes the token; revoking a revoked token is a no-op,
// an unknown id ErrNotFound.
func (s *Store) RevokeAccessToken(ctx context.Context, id string, now time.Time) error {
	err := s.write(ctx, func(tx *txn) error {
		if _, err := tx.exec(`UPDATE access_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at = 0`,
			revokedAt(now), id); err != nil {
			return err
		}
		var one int
		return tx.queryRow(`SELECT 1 FROM access_tokens WHERE id = $1`, id).Scan(&one) // ErrNoRows: unknown
	})
	return mapErr("revoke access token", err)
}

// ---------------------------------------------------------------------------
// Refresh tokens

const refreshTokenCols = `id, token_hash, family_id, client_id, COALESCE(user_id, ''), scopes, audience, amr, acr,
	auth_time, auth_request_id, created_at, expires_at, used_at, revoked_at, session_hash`

func scanRefreshToken(sc scanner) (storage.RefreshToken, error) {
	var t storage.RefreshToken
	var scopes, aud, amr string
	var authTime, created, exp, used, revoked int64
	if err := sc.Scan(&t.ID, &t.TokenHash, &t.FamilyID, &t.ClientID, &t.UserID, &scopes, &aud, &amr, &t.ACR,
		&authTime, &t.AuthRequestID, &created, &exp, &used, &revoked, &t.SessionHash); err != nil {
		return t, err
	}
	t.AuthTime, t.CreatedAt, t.ExpiresAt = fromUnix(authTime), fromUnix(created), fromUnix(exp)
	t.UsedAt, t.RevokedAt = fromUnix(used), fromUnix(revoked)
	var err error
	if t.Scopes, err = unlist(scopes); err != nil {
		return t, err
	}
	if t.Audience, err = unlist(aud); err != nil {
		return t, err
	}
	t.AMR, err = unlist(amr)
	return t, err
}

// insertRefreshToken stores rt and, if at.ID is set, its access token. An
// empty FamilyID starts a family named after the token; an access token
// without RefreshTokenID is linked to rt so family revocation reaches it.
func insertRefreshToken(tx *txn, rt storage.RefreshToken, at storage.AccessToken) error {
	if len(rt.TokenHash) == 0 {
		return fmt.Errorf("refresh token %q without hash", rt.ID)
	}
	if rt.FamilyID == "" {
		rt.FamilyID = rt.ID
	}
	if _, err := tx.exec(`INSERT INTO refresh_tokens (id, token_hash, family_id, client_id, user_id, scopes, audience,
		amr, acr, auth_time, auth_request_id, created_at, expires_at, used_at, revoked_at, session_hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		rt.ID, rt.TokenHash, rt.FamilyID, rt.ClientID, nullStr(rt.UserID), list(rt.Scopes), list(rt.Audience),
		list(rt.AMR), rt.ACR, unix(rt.AuthTime), rt.AuthRequestID, unix(rt.CreatedAt), unix(rt.ExpiresAt),
		unix(rt.UsedAt), unix(rt.RevokedAt), nullBytes(rt.SessionHash)); err != nil {
		return err
	}
	if at.ID == "" {
		return nil
	}
	if at.RefreshTokenID == "" {
		at.RefreshTokenID = rt.ID
	}
	return insertAccessToken(tx, at)
}

// CreateRefreshToken stores rt and its access token (if at.ID is set) in
// one transaction: both or neither.
func (s *Store) CreateRefreshToken(ctx context.Context, rt storage.RefreshToken, at storage.AccessToken) error {
	// The request's mark and session are read for a code's first tokens
	// only (rt.AuthRequestID set): a rotation needs no mark (a revoked
	// family's token does not rotate, and a revocation after it reaches
	// the new token by its family) and takes its session from the old
	// token (RotateRefreshToken).
	err := s.write(ctx, func(tx *txn) error {
		sess, ok, err := requestSession(tx, rt.AuthRequestID, rt.UserID)
		if err != nil {
			return err
		}
		if ok {
			rt.SessionHash, at.SessionHash = sess, sess
		}
		return insertRefreshToken(tx, rt, at)
	})
	return mapErr("create refresh token", err)
}

// refreshByHash reads a token by hash outside a transaction; errors name
// the operation op.
func (s *Store) refreshByHash(ctx context.Context, op string, hash []byte) (storage.RefreshToken, error) {
	return one(ctx, s, op, scanRefreshToken,
		`SELECT `+refreshTokenCols+` FROM refresh_tokens WHERE token_hash = $1`, hash)
}

// RefreshTokenByHash returns a live token. A used token revokes its family
// and returns ErrReused; expired (ExpiresAt <= now), revoked or unknown
// tokens return ErrNotFound. The common, live case is a plain read.
func (s *Store) RefreshTokenByHash(ctx context.Context, hash []byte, now time.Time) (storage.RefreshToken, error) {
	t, err := s.refreshByHash(ctx, "refresh token by hash", hash)
	if err != nil {
		return storage.RefreshToken{}, err
	}
	if !t.UsedAt.IsZero() {
		err := s.write(ctx, func(tx *txn) error { return revokeFamily(tx, t.FamilyID, now) })
		if err != nil {
			return storage.RefreshToken{}, mapErr("refresh token by hash", err)
		}
		return storage.RefreshToken{}, fmt.Errorf("postgres: refresh token by hash: %w", storage.ErrReused)
	}
	if !t.RevokedAt.IsZero() || unix(t.ExpiresAt) <= now.Unix() {
		return storage.RefreshToken{}, fmt.Errorf("postgres: refresh token by hash: expired or revoked: %w", storage.ErrNotFound)
	}
	return t, nil
}

// RefreshTokenInfo returns the token with that hash in whatever state; it
// changes nothing.
func (s *Store) RefreshTokenInfo(ctx context.Context, hash []byte) (storage.RefreshToken, error) {
	return s.refreshByHash(ctx, "refresh token info", hash)
}

// RefreshTokenByID returns the token in whatever state it is (used,
// revoked, expired); ErrNotFound when unknown.
func (s *Store) RefreshTokenByID(ctx context.Context, id string) (storage.RefreshToken, error) {
	return one(ctx, s, "refresh token by id", scanRefreshToken, `SELECT `+refreshTokenCols+` FROM refresh_tokens WHERE id = $1`, id)
}

// RotateRefreshToken, in one transaction, marks the live token oldHash used
// and stores next in the same family (next.FamilyID is overwritten) with its
// access token. A used old token revokes the family, including the tokens
// rotated from it, and returns ErrReused; an expired, revoked or unknown one
// ErrNotFound.
//
// Locks: lockStep on the token's user before the guarded UPDATE, so that a
// revocation of the user's tokens or of the family (which takes lockEnd
// first) either sees the new token or makes this rotation find the old one
// revoked; and the client's lock in shared mode, for DeleteClient. A rotation that loses the UPDATE to another restarts rather than
// revoking at once: the revocation needs lockEnd, which it must not take
// while holding lockStep (two losers would each wait for the other).
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash []byte, next storage.RefreshToken, at storage.AccessToken, now time.Time) error {
	err := s.write(ctx, func(tx *txn) error {
		var id, family, user, client string
		var used, revoked, exp int64
		if err := tx.queryRow(`SELECT id, family_id, COALESCE(user_id, ''), client_id, used_at, revoked_at, expires_at
			FROM refresh_tokens WHERE token_hash = $1`, oldHash).Scan(&id, &family, &user, &client, &used, &revoked, &exp); err != nil {
			return err // ErrNoRows: ErrNotFound
		}
		if used != 0 {
			if err := revokeFamily(tx, family, now); err != nil {
				return err
			}
			return commitThen{storage.ErrReused}
		}
		if revoked != 0 || exp <= now.Unix() {
			return storage.ErrNotFound
		}
		if user != "" {
			if _, err := lockUser(tx, user, lockStep); err != nil {
				return err
			}
		}
		// The client likewise, against DeleteClient (clientLockClass).
		if _, err := tx.exec(`SELECT pg_advisory_xact_lock_shared($1, hashtext($2))`, clientLockClass, client); err != nil {
			return err
		}
		// Exactly one rotation matches; a concurrent one holds the row
		// until it commits, and this UPDATE then re-checks used_at on it.
		// RETURNING the session as the row says after any wait: the new
		// tokens follow a ReplaceSession that moved the family (under
		// lockEnd, which lockStep above waited for).
		var sess []byte
		err := tx.queryRow(`UPDATE refresh_tokens SET used_at = $1
			WHERE id = $2 AND used_at = 0 AND revoked_at = 0 AND expires_at > $3 RETURNING session_hash`,
			max(now.Unix(), 1), id, now.Unix()).Scan(&sess)
		if errors.Is(err, pgx.ErrNoRows) {
			return errRestart // used or revoked since the read: decide again
		}
		if err != nil {
			return err
		}
		next.FamilyID = family
		next.SessionHash, at.SessionHash = sess, sess
		return insertRefreshToken(tx, next, at)
	})
	return mapErr("rotate refresh token", err)
}

// revokeFamily revokes every refresh token of the family and the access
// tokens issued with them. lockEnd on the family's users first: a rotation
// in flight commits before the revoking statements take their snapshots.
func revokeFamily(tx *txn, family string, now time.Time) error {
	if err := lockUsersWhere(tx, `SELECT user_id FROM refresh_tokens WHERE family_id = $1`, family); err != nil {
		return err
	}
	t := revokedAt(now)
	if _, err := tx.exec(`UPDATE access_tokens SET revoked_at = $1
		WHERE revoked_at = 0 AND refresh_token_id IN (SELECT id FROM refresh_tokens WHERE family_id = $2)`,
		t, family); err != nil {
		return err
	}
	_, err := tx.exec(`UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at = 0`, t, family)
	return err
}

// RevokeRefreshFamily revokes every refresh token of the family and the
// access tokens issued with them. An unknown family is a no-op.
func (s *Store) RevokeRefreshFamily(ctx context.Context, familyID string, now time.Time) error {
	err := s.write(ctx, func(tx *txn) error { return revokeFamily(tx, familyID, now) })
	return mapErr("revoke refresh family", err)
}

// ---------------------------------------------------------------------------
// Sessions

const sessionCols = `id_hash, user_id, auth_time, amr, acr, created_at, last_seen_at, expires_at, client_ip, user_agent, verified_at`

// sessionValues are sessionCols' placeholders and sessionArgs their values.
const sessionValues = `$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11`

func sessionArgs(sess storage.Session) []any {
	return []any{sess.IDHash, sess.UserID, unix(sess.AuthTime), list(sess.AMR), sess.ACR, unix(sess.CreatedAt),
		unix(sess.LastSeenAt), unix(sess.ExpiresAt), sess.ClientIP, sess.UserAgent, unix(sess.VerifiedAt)}
}

func scanSession(sc scanner) (storage.Session, error) {
	var sess storage.Session
	var amr string
	var authTime, created, seen, exp, verified int64
	if err := sc.Scan(&sess.IDHash, &sess.UserID, &authTime, &amr, &sess.ACR, &created, &seen, &exp,
		&sess.ClientIP, &sess.UserAgent, &verified); err != nil {
		return sess, err
	}
	sess.AuthTime, sess.CreatedAt, sess.LastSeenAt, sess.ExpiresAt = fromUnix(authTime), fromUnix(created), fromUnix(seen), fromUnix(exp)
	sess.VerifiedAt = fromUnix(verified)
	var err error
	sess.AMR, err = unlist(amr)
	return sess, err
}

// CreateSession inserts s; ErrConflict when the hash exists, ErrNotFound
// when the user does not.
func (s *Store) CreateSession(ctx context.Context, sess storage.Session) error {
	if len(sess.IDHash) == 0 {
		return fmt.Errorf("postgres: create session: empty id hash")
	}
	_, err := s.exec(ctx, `INSERT INTO sessions (`+sessionCols+`) VALUES (`+sessionValues+`)`, sessionArgs(sess)...)
	return mapErr("create session", err)
}

// SessionByHash returns a live session; ErrNotFound when unknown or
// expired (ExpiresAt <= now).
func (s *Store) SessionByHash(ctx context.Context, idHash []byte, now time.Time) (storage.Session, error) {
	return one(ctx, s, "session by hash", scanSession,
		`SELECT `+sessionCols+` FROM sessions WHERE id_hash = $1 AND expires_at > $2`, idHash, now.Unix())
}

// TouchSession records activity on a live session; ErrNotFound when unknown
// or expired. It does not extend the session.
func (s *Store) TouchSession(ctx context.Context, idHash []byte, now time.Time) error {
	n, err := s.exec(ctx, `UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2 AND expires_at > $3`,
		unix(now), idHash, now.Unix())
	if err != nil {
		return mapErr("touch session", err)
	}
	if n == 0 {
		return fmt.Errorf("postgres: touch session: %w", storage.ErrNotFound)
	}
	return nil
}

// offlineScope matches a JSON-encoded scope list holding offline_access
// (sqlite's pattern; PostgreSQL's LIKE is case-sensitive, sqlite's is not
// for ASCII, which the provider's scopes never need: it stores only the
// supported scopes, spelled as defined).
const offlineScope = `%"offline_access"%`

// EndSession deletes the SSO session and revokes the tokens issued through
// it, except offline_access grants, in one transaction.
func (s *Store) EndSession(ctx context.Context, idHash []byte, now time.Time) (int, error) {
	if len(idHash) == 0 {
		return 0, fmt.Errorf("postgres: end session: empty id hash")
	}
	var revoked int
	err := s.write(ctx, func(tx *txn) error {
		var err error
		revoked, err = endSession(tx, idHash, now, false)
		return err
	})
	return revoked, mapErr("end session", err)
}

// SignOutSession is EndSession with the session's offline grants too
// (storage.Store.SignOutSession).
func (s *Store) SignOutSession(ctx context.Context, idHash []byte, now time.Time) (int, error) {
	if len(idHash) == 0 {
		return 0, fmt.Errorf("postgres: sign out session: empty id hash")
	}
	var revoked int
	err := s.write(ctx, func(tx *txn) error {
		var err error
		revoked, err = endSession(tx, idHash, now, true)
		return err
	})
	return revoked, mapErr("sign out session", err)
}

// cancelSignIns ends the sign-ins in progress that match where (a done
// request waiting for its callback, an issued code not yet redeemed, a
// request at the second step): they expire now, so no callback, code or
// page of theirs works any more. Requests whose code was redeemed keep
// their expiry (reuse detection needs them). where uses $3 and up.
func cancelSignIns(tx *txn, now time.Time, where string, args ...any) (int, error) {
	// Every request not redeemed and not cancelled yet, whatever its
	// expiry on this clock: a code saved in a request's last minute
	// outlives it, and a step on a clock behind still sees it live (third
	// review, N1). The count is of those still live here. where uses $3
	// and up in both statements ($1 and $2 are this function's).
	var live int
	if err := tx.queryRow(`SELECT COUNT(*) FROM auth_requests WHERE `+where+
		` AND code_used_at = 0 AND tokens_revoked_at = 0 AND (expires_at > $1 OR code_expires_at > $2)`,
		append([]any{now.Unix(), now.Unix()}, args...)...).Scan(&live); err != nil {
		return 0, err
	}
	// Cancelled is a state, not a time: expiries of 0 are past on every
	// clock, and the mark refuses tokens.
	_, err := tx.exec(`UPDATE auth_requests SET expires_at = $2, code_expires_at = $2, tokens_revoked_at = $1
		WHERE `+where+` AND code_used_at = 0 AND tokens_revoked_at = 0`, append([]any{revokedAt(now), 0}, args...)...)
	return live, err
}

// endSession ends session idHash inside tx, after lockEnd on its user and
// on the users of tokens issued through it; with offline, its offline
// grants too (the account page's "end this session": the browser is
// signed out, not just logged out of the front channel).
func endSession(tx *txn, idHash []byte, now time.Time, offline bool) (int, error) {
	if err := lockUsersWhere(tx, `SELECT user_id FROM sessions WHERE id_hash = $1
		UNION SELECT user_id FROM refresh_tokens WHERE session_hash = $1`, idHash); err != nil {
		return 0, err
	}
	if _, err := tx.exec(`DELETE FROM sessions WHERE id_hash = $1`, idHash); err != nil {
		return 0, err
	}
	// A sign-in completed from this session and not yet redeemed would
	// otherwise still give tokens after the logout.
	if _, err := cancelSignIns(tx, now, `session_hash = $3`, idHash); err != nil {
		return 0, err
	}
	t := revokedAt(now)
	// A code redeemed whose tokens are not stored yet: they never will be,
	// even an offline grant's (refusing that narrow race is the safe side).
	if _, err := tx.exec(`UPDATE auth_requests SET tokens_revoked_at = $1
		WHERE session_hash = $2 AND code_used_at <> 0 AND tokens_revoked_at = 0`, t, idHash); err != nil {
		return 0, err
	}
	spare := offlineScope
	if offline {
		spare = "" // NOT LIKE '' holds for every non-empty scope list
	}
	n, err := tx.exec(`UPDATE refresh_tokens SET revoked_at = $1
		WHERE session_hash = $2 AND revoked_at = 0 AND scopes NOT LIKE $3`, t, idHash, spare)
	if err != nil {
		return 0, err
	}
	m, err := tx.exec(`UPDATE access_tokens SET revoked_at = $1
		WHERE session_hash = $2 AND revoked_at = 0 AND NOT EXISTS (SELECT 1 FROM refresh_tokens r
			WHERE r.id = access_tokens.refresh_token_id AND r.scopes LIKE $3 AND r.revoked_at = 0)`, t, idHash, offlineScope)
	return int(n + m), err
}

// ReplaceSession retires the browser's previous session oldHash for its new
// one newHash: for the same user the old session's tokens and sign-ins move
// to the new one (a later logout in this browser ends them too); for
// another user the old session is ended as by EndSession.
func (s *Store) ReplaceSession(ctx context.Context, oldHash, newHash []byte, now time.Time) error {
	if len(oldHash) == 0 || len(newHash) == 0 {
		return fmt.Errorf("postgres: replace session: empty id hash")
	}
	err := s.write(ctx, func(tx *txn) error {
		// lockEnd on the sessions' users first (the order EndSession takes
		// its locks in), then the session rows: neither session can end
		// and no token can be issued into either while tokens move.
		if err := lockUsersWhere(tx, `SELECT user_id FROM sessions WHERE id_hash IN ($1, $2)`, oldHash, newHash); err != nil {
			return err
		}
		rows, err := tx.query(`SELECT id_hash, user_id FROM sessions WHERE id_hash IN ($1, $2) FOR UPDATE`, oldHash, newHash)
		if err != nil {
			return err
		}
		users := map[string]string{}
		for rows.Next() {
			var h []byte
			var u string
			if err := rows.Scan(&h, &u); err != nil {
				rows.Close()
				return err
			}
			users[string(h)] = u
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if newUser := users[string(newHash)]; newUser == "" {
			return storage.ErrNotFound
		} else if users[string(oldHash)] != newUser {
			_, err := endSession(tx, oldHash, now, false)
			return err
		}
		for _, table := range []string{"access_tokens", "refresh_tokens", "auth_requests"} {
			if _, err := tx.exec(`UPDATE `+table+` SET session_hash = $1 WHERE session_hash = $2`, newHash, oldHash); err != nil {
				return err
			}
		}
		_, err = tx.exec(`DELETE FROM sessions WHERE id_hash = $1`, oldHash)
		return err
	})
	return mapErr("replace session", err)
}

// endUser deletes the user's SSO sessions and remembered devices and
// revokes all their tokens (offline grants too) inside tx; an operator
// action or a changed factor. The caller holds lockEnd on the user.
func endUser(tx *txn, userID string, now time.Time) (storage.Ended, error) {
	return endUserExcept(tx, userID, nil, nil, now)
}

// endUserExcept is endUser keeping the SSO session keep and the tokens
// issued through it, and the remembered device keepDevice (nil keeps
// nothing): a password change from the
// account page ends everything else. The caller holds lockEnd on the user.
func endUserExcept(tx *txn, userID string, keep, keepDevice []byte, now time.Time) (storage.Ended, error) {
	var e storage.Ended
	// other ($3) matches rows not issued through keep; with keep nil, all.
	const other = ` AND ($3::bytea IS NULL OR session_hash IS NULL OR session_hash <> $3)`
	n, err := tx.exec(`DELETE FROM sessions WHERE user_id = $1 AND ($2::bytea IS NULL OR id_hash <> $2)`, userID, keep)
	if err != nil {
		return e, err
	}
	e.Sessions = int(n)
	if n, err = tx.exec(`DELETE FROM devices WHERE user_id = $1 AND ($2::bytea IS NULL OR id_hash <> $2)`, userID, keepDevice); err != nil {
		return e, err
	}
	e.Devices = int(n)
	// Sign-ins in progress end too, but those linked to keep (the kept
	// session's own, such as the one whose new password this is).
	if e.SignIns, err = cancelSignIns(tx, now, `user_id = $3 AND ($4::bytea IS NULL OR session_hash IS NULL OR session_hash <> $4)`,
		userID, keep); err != nil {
		return e, err
	}
	t := revokedAt(now)
	// Codes redeemed whose tokens are not stored yet: they never will be.
	if _, err = tx.exec(`UPDATE auth_requests SET tokens_revoked_at = $1 WHERE user_id = $2 AND code_used_at <> 0 AND tokens_revoked_at = 0`+other,
		t, userID, keep); err != nil {
		return e, err
	}
	if n, err = tx.exec(`UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at = 0`+other, t, userID, keep); err != nil {
		return e, err
	}
	e.Tokens = int(n)
	n, err = tx.exec(`UPDATE access_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at = 0`+other, t, userID, keep)
	e.Tokens += int(n)
	return e, err
}

// EndUserSessions ends what the user is signed in with: with clientID
// empty, every SSO session and every token; otherwise every token at that
// client only (SSO sessions are not per client).
func (s *Store) EndUserSessions(ctx context.Context, userID, clientID string, now time.Time) (storage.Ended, error) {
	var e storage.Ended
	err := s.write(ctx, func(tx *txn) error {
		if err := userExists(tx, userID, lockEnd); err != nil {
			return err
		}
		var err error
		if clientID == "" {
			e, err = endUser(tx, userID, now)
			return err
		}
		e = storage.Ended{}
		if e.SignIns, err = cancelSignIns(tx, now, `user_id = $3 AND client_id = $4`, userID, clientID); err != nil {
			return err
		}
		t := revokedAt(now)
		if _, err := tx.exec(`UPDATE auth_requests SET tokens_revoked_at = $1 WHERE user_id = $2 AND client_id = $3 AND code_used_at <> 0 AND tokens_revoked_at = 0`,
			t, userID, clientID); err != nil {
			return err
		}
		n, err := tx.exec(`UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND client_id = $3 AND revoked_at = 0`, t, userID, clientID)
		if err != nil {
			return err
		}
		e.Tokens = int(n)
		n, err = tx.exec(`UPDATE access_tokens SET revoked_at = $1 WHERE user_id = $2 AND client_id = $3 AND revoked_at = 0`, t, userID, clientID)
		e.Tokens += int(n)
		return err
	})
	return e, mapErr("end user sessions", err)
}

// userExists locks the user in mode; ErrNotFound for an unknown user.
func userExists(tx *txn, userID string, mode userLock) error {
	found, err := lockUser(tx, userID, mode)
	if err != nil {
		return err
	}
	if !found {
		return pgx.ErrNoRows
	}
	return nil
}

// DeleteSession removes the session; deleting an unknown session is not an
// error (logout must be idempotent).
func (s *Store) DeleteSession(ctx context.Context, idHash []byte) error {
	_, err := s.exec(ctx, `DELETE FROM sessions WHERE id_hash = $1`, idHash)
	return mapErr("delete session", err)
}
