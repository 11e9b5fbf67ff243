package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

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
func requestSession(tx *txn, id string) (session []byte, ok bool, err error) {
	if id == "" {
		return nil, false, nil
	}
	row, err := tx.queryRow(`SELECT tokens_revoked_at, session_hash FROM auth_requests WHERE id = ?`, id)
	if err != nil {
		return nil, false, err
	}
	var at int64
	if err := row.Scan(&at, &session); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
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
		refresh_token_id, created_at, expires_at, revoked_at, session_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.ClientID, nullStr(t.UserID), list(t.Scopes), list(t.Audience), t.AuthRequestID,
		t.RefreshTokenID, unix(t.CreatedAt), unix(t.ExpiresAt), unix(t.RevokedAt), nullBytes(t.SessionHash))
	return err
}

// CreateAccessToken inserts t; ErrConflict when the id exists, ErrNotFound
// when t.UserID names no user.
func (s *Store) CreateAccessToken(ctx context.Context, t storage.AccessToken) error {
	err := s.write(ctx, func(tx *txn) error {
		sess, ok, err := requestSession(tx, t.AuthRequestID)
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
	row, err := s.queryRow(ctx, `SELECT `+accessTokenCols+` FROM access_tokens WHERE id = ?`, id)
	if err != nil {
		return storage.AccessToken{}, mapErr("access token by id", err)
	}
	t, err := scanAccessToken(row)
	if err != nil {
		return storage.AccessToken{}, mapErr("access token by id", err)
	}
	if !t.RevokedAt.IsZero() || unix(t.ExpiresAt) <= now.Unix() {
		return storage.AccessToken{}, fmt.Errorf("sqlite: access token by id: expired or revoked: %w", storage.ErrNotFound)
	}
	return t, nil
}

// RevokeAccessToken revokes the token; revoking a revoked token is a no-op,
// an unknown id ErrNotFound.
func (s *Store) RevokeAccessToken(ctx context.Context, id string, now time.Time) error {
	err := s.write(ctx, func(tx *txn) error {
		if _, err := tx.exec(`UPDATE access_tokens SET revoked_at = ? WHERE id = ? AND revoked_at = 0`,
			revokedAt(now), id); err != nil {
			return err
		}
		row, err := tx.queryRow(`SELECT 1 FROM access_tokens WHERE id = ?`, id)
		if err != nil {
			return err
		}
		var one int
		return row.Scan(&one) // ErrNoRows: unknown
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
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
		sess, ok, err := requestSession(tx, rt.AuthRequestID)
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

// refreshByHash reads a token by hash outside a transaction.
func (s *Store) refreshByHash(ctx context.Context, hash []byte) (storage.RefreshToken, error) {
	row, err := s.queryRow(ctx, `SELECT `+refreshTokenCols+` FROM refresh_tokens WHERE token_hash = ?`, hash)
	if err != nil {
		return storage.RefreshToken{}, err
	}
	return scanRefreshToken(row)
}

// RefreshTokenByHash returns a live token. A used token revokes its family
// and returns ErrReused; expired (ExpiresAt <= now), revoked or unknown
// tokens return ErrNotFound. The common, live case is a plain read.
func (s *Store) RefreshTokenByHash(ctx context.Context, hash []byte, now time.Time) (storage.RefreshToken, error) {
	t, err := s.refreshByHash(ctx, hash)
	if err != nil {
		return storage.RefreshToken{}, mapErr("refresh token by hash", err)
	}
	if !t.UsedAt.IsZero() {
		err := s.write(ctx, func(tx *txn) error { return revokeFamily(tx, t.FamilyID, now) })
		if err != nil {
			return storage.RefreshToken{}, mapErr("refresh token by hash", err)
		}
		return storage.RefreshToken{}, fmt.Errorf("sqlite: refresh token by hash: %w", storage.ErrReused)
	}
	if !t.RevokedAt.IsZero() || unix(t.ExpiresAt) <= now.Unix() {
		return storage.RefreshToken{}, fmt.Errorf("sqlite: refresh token by hash: expired or revoked: %w", storage.ErrNotFound)
	}
	return t, nil
}

// RefreshTokenInfo returns the token with that hash in whatever state; it
// changes nothing.
func (s *Store) RefreshTokenInfo(ctx context.Context, hash []byte) (storage.RefreshToken, error) {
	t, err := s.refreshByHash(ctx, hash)
	return t, mapErr("refresh token info", err)
}

// RefreshTokenByID returns the token in whatever state it is (used,
// revoked, expired); ErrNotFound when unknown.
func (s *Store) RefreshTokenByID(ctx context.Context, id string) (storage.RefreshToken, error) {
	return one(ctx, s, "refresh token by id", scanRefreshToken, `SELECT `+refreshTokenCols+` FROM refresh_tokens WHERE id = ?`, id)
}

// RotateRefreshToken, in one transaction, marks the live token oldHash used
// and stores next in the same family (next.FamilyID is overwritten) with its
// access token. A used old token revokes the family, including the tokens
// rotated from it, and returns ErrReused; an expired, revoked or unknown one
// ErrNotFound.
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash []byte, next storage.RefreshToken, at storage.AccessToken, now time.Time) error {
	err := s.write(ctx, func(tx *txn) error {
		// The session as the row says in this transaction: the new tokens
		// follow a ReplaceSession that moved the family since the caller
		// read it.
		row, err := tx.queryRow(`SELECT id, family_id, used_at, revoked_at, expires_at, session_hash FROM refresh_tokens
			WHERE token_hash = ?`, oldHash)
		if err != nil {
			return err
		}
		var id, family string
		var used, revoked, exp int64
		var sess []byte
		if err := row.Scan(&id, &family, &used, &revoked, &exp, &sess); err != nil {
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
		if _, err := tx.exec(`UPDATE refresh_tokens SET used_at = ? WHERE id = ? AND used_at = 0`,
			max(now.Unix(), 1), id); err != nil {
			return err
		}
		next.FamilyID = family
		next.SessionHash, at.SessionHash = sess, sess
		return insertRefreshToken(tx, next, at)
	})
	return mapErr("rotate refresh token", err)
}

// revokeFamily revokes every refresh token of the family and the access
// tokens issued with them.
func revokeFamily(tx *txn, family string, now time.Time) error {
	t := revokedAt(now)
	if _, err := tx.exec(`UPDATE access_tokens SET revoked_at = ?
		WHERE revoked_at = 0 AND refresh_token_id IN (SELECT id FROM refresh_tokens WHERE family_id = ?)`,
		t, family); err != nil {
		return err
	}
	_, err := tx.exec(`UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at = 0`, t, family)
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
const sessionValues = `?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?`

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
		return fmt.Errorf("sqlite: create session: empty id hash")
	}
	_, err := s.exec(ctx, `INSERT INTO sessions (`+sessionCols+`) VALUES (`+sessionValues+`)`, sessionArgs(sess)...)
	return mapErr("create session", err)
}

// SessionByHash returns a live session; ErrNotFound when unknown or
// expired (ExpiresAt <= now).
func (s *Store) SessionByHash(ctx context.Context, idHash []byte, now time.Time) (storage.Session, error) {
	return one(ctx, s, "session by hash", scanSession,
		`SELECT `+sessionCols+` FROM sessions WHERE id_hash = ? AND expires_at > ?`, idHash, now.Unix())
}

// TouchSession records activity on a live session; ErrNotFound when unknown
// or expired. It does not extend the session.
func (s *Store) TouchSession(ctx context.Context, idHash []byte, now time.Time) error {
	n, err := s.exec(ctx, `UPDATE sessions SET last_seen_at = ? WHERE id_hash = ? AND expires_at > ?`,
		unix(now), idHash, now.Unix())
	if err != nil {
		return mapErr("touch session", err)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: touch session: %w", storage.ErrNotFound)
	}
	return nil
}

// offlineScope matches a JSON-encoded scope list holding offline_access.
const offlineScope = `%"offline_access"%`

// EndSession deletes the SSO session and revokes the tokens issued through
// it, except offline_access grants, in one transaction.
func (s *Store) EndSession(ctx context.Context, idHash []byte, now time.Time) (int, error) {
	if len(idHash) == 0 {
		return 0, fmt.Errorf("sqlite: end session: empty id hash")
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
		return 0, fmt.Errorf("sqlite: sign out session: empty id hash")
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
// their expiry (reuse detection needs them).
func cancelSignIns(tx *txn, now time.Time, where string, args ...any) (int, error) {
	// Every request not redeemed and not cancelled yet, whatever its
	// expiry on this clock: a code saved in a request's last minute
	// outlives it, and a step on a clock behind still sees it live (third
	// review, N1). The count is of those still live here.
	row, err := tx.queryRow(`SELECT COUNT(*) FROM auth_requests WHERE `+where+
		` AND code_used_at = 0 AND tokens_revoked_at = 0 AND (expires_at > ? OR code_expires_at > ?)`,
		append(append([]any{}, args...), now.Unix(), now.Unix())...)
	if err != nil {
		return 0, err
	}
	var live int
	if err := row.Scan(&live); err != nil {
		return 0, err
	}
	// Cancelled is a state, not a time: expiries of 0 are past on every
	// clock, and the mark refuses tokens.
	_, err = tx.exec(`UPDATE auth_requests SET expires_at = 0, code_expires_at = 0, tokens_revoked_at = ?
		WHERE `+where+` AND code_used_at = 0 AND tokens_revoked_at = 0`, append([]any{revokedAt(now)}, args...)...)
	return live, err
}

// endSession ends session idHash inside tx; with offline, its offline
// grants too (the account page's "end this session": the browser is
// signed out, not just logged out of the front channel).
func endSession(tx *txn, idHash []byte, now time.Time, offline bool) (int, error) {
	if _, err := tx.exec(`DELETE FROM sessions WHERE id_hash = ?`, idHash); err != nil {
		return 0, err
	}
	// A sign-in completed from this session and not yet redeemed would
	// otherwise still give tokens after the logout.
	if _, err := cancelSignIns(tx, now, `session_hash = ?`, idHash); err != nil {
		return 0, err
	}
	t := revokedAt(now)
	// A code redeemed whose tokens are not stored yet: they never will be,
	// even an offline grant's (refusing that narrow race is the safe side).
	if _, err := tx.exec(`UPDATE auth_requests SET tokens_revoked_at = ?
		WHERE session_hash = ? AND code_used_at <> 0 AND tokens_revoked_at = 0`, t, idHash); err != nil {
		return 0, err
	}
	spare := offlineScope
	if offline {
		spare = "" // NOT LIKE '' holds for every non-empty scope list
	}
	n, err := tx.exec(`UPDATE refresh_tokens SET revoked_at = ?
		WHERE session_hash = ? AND revoked_at = 0 AND scopes NOT LIKE ?`, t, idHash, spare)
	if err != nil {
		return 0, err
	}
	m, err := tx.exec(`UPDATE access_tokens SET revoked_at = ?
		WHERE session_hash = ? AND revoked_at = 0 AND NOT EXISTS (SELECT 1 FROM refresh_tokens r
			WHERE r.id = access_tokens.refresh_token_id AND r.scopes LIKE ? AND r.revoked_at = 0)`, t, idHash, offlineScope)
	return int(n + m), err
}

// ReplaceSession retires the browser's previous session oldHash for its new
// one newHash: for the same user the old session's tokens and sign-ins move
// to the new one (a later logout in this browser ends them too); for
// another user the old session is ended as by EndSession.
func (s *Store) ReplaceSession(ctx context.Context, oldHash, newHash []byte, now time.Time) error {
	if len(oldHash) == 0 || len(newHash) == 0 {
		return fmt.Errorf("sqlite: replace session: empty id hash")
	}
	err := s.write(ctx, func(tx *txn) error {
		users := map[string]string{}
		for _, h := range [][]byte{oldHash, newHash} {
			row, err := tx.queryRow(`SELECT user_id FROM sessions WHERE id_hash = ?`, h)
			if err != nil {
				return err
			}
			var u string
			if err := row.Scan(&u); err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			users[string(h)] = u
		}
		if newUser := users[string(newHash)]; newUser == "" {
			return storage.ErrNotFound
		} else if users[string(oldHash)] != newUser {
			_, err := endSession(tx, oldHash, now, false)
			return err
		}
		for _, table := range []string{"access_tokens", "refresh_tokens", "auth_requests"} {
			if _, err := tx.exec(`UPDATE `+table+` SET session_hash = ? WHERE session_hash = ?`, newHash, oldHash); err != nil {
				return err
			}
		}
		_, err := tx.exec(`DELETE FROM sessions WHERE id_hash = ?`, oldHash)
		return err
	})
	return mapErr("replace session", err)
}

// endUser deletes the user's SSO sessions and remembered devices and
// revokes all their tokens (offline grants too) inside tx; an operator
// action or a changed factor.
func endUser(tx *txn, userID string, now time.Time) (storage.Ended, error) {
	return endUserExcept(tx, userID, nil, nil, now)
}

// endUserExcept is endUser keeping the SSO session keep and the tokens
// issued through it, and the remembered device keepDevice (nil keeps
// nothing): a password change from the
// account page ends everything else.
func endUserExcept(tx *txn, userID string, keep, keepDevice []byte, now time.Time) (storage.Ended, error) {
	var e storage.Ended
	// other matches rows not issued through keep; with keep nil, all.
	other, args := "", []any{}
	if keep != nil {
		other, args = " AND (session_hash IS NULL OR session_hash <> ?)", []any{keep}
	}
	n, err := tx.exec(`DELETE FROM sessions WHERE user_id = ? AND (? IS NULL OR id_hash <> ?)`, userID, keep, keep)
	if err != nil {
		return e, err
	}
	e.Sessions = int(n)
	if n, err = tx.exec(`DELETE FROM devices WHERE user_id = ? AND (? IS NULL OR id_hash <> ?)`, userID, keepDevice, keepDevice); err != nil {
		return e, err
	}
	e.Devices = int(n)
	// Sign-ins in progress end too, but those linked to keep (the kept
	// session's own, such as the one whose new password this is).
	if e.SignIns, err = cancelSignIns(tx, now, `user_id = ?`+other, append([]any{userID}, args...)...); err != nil {
		return e, err
	}
	t := revokedAt(now)
	// Codes redeemed whose tokens are not stored yet: they never will be.
	if _, err = tx.exec(`UPDATE auth_requests SET tokens_revoked_at = ? WHERE user_id = ? AND code_used_at <> 0 AND tokens_revoked_at = 0`+other,
		append([]any{t, userID}, args...)...); err != nil {
		return e, err
	}
	if n, err = tx.exec(`UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at = 0`+other,
		append([]any{t, userID}, args...)...); err != nil {
		return e, err
	}
	e.Tokens = int(n)
	n, err = tx.exec(`UPDATE access_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at = 0`+other,
		append([]any{t, userID}, args...)...)
	e.Tokens += int(n)
	return e, err
}

// EndUserSessions ends what the user is signed in with: with clientID
// empty, every SSO session and every token; otherwise every token at that
// client only (SSO sessions are not per client).
func (s *Store) EndUserSessions(ctx context.Context, userID, clientID string, now time.Time) (storage.Ended, error) {
	var e storage.Ended
	err := s.write(ctx, func(tx *txn) error {
		if err := userExists(tx, userID); err != nil {
			return err
		}
		var err error
		if clientID == "" {
			e, err = endUser(tx, userID, now)
			return err
		}
		e = storage.Ended{}
		if e.SignIns, err = cancelSignIns(tx, now, `user_id = ? AND client_id = ?`, userID, clientID); err != nil {
			return err
		}
		t := revokedAt(now)
		if _, err := tx.exec(`UPDATE auth_requests SET tokens_revoked_at = ? WHERE user_id = ? AND client_id = ? AND code_used_at <> 0 AND tokens_revoked_at = 0`,
			t, userID, clientID); err != nil {
			return err
		}
		n, err := tx.exec(`UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND client_id = ? AND revoked_at = 0`, t, userID, clientID)
		if err != nil {
			return err
		}
		e.Tokens = int(n)
		n, err = tx.exec(`UPDATE access_tokens SET revoked_at = ? WHERE user_id = ? AND client_id = ? AND revoked_at = 0`, t, userID, clientID)
		e.Tokens += int(n)
		return err
	})
	return e, mapErr("end user sessions", err)
}

// userExists is ErrNoRows (mapped to ErrNotFound) for an unknown user.
func userExists(tx *txn, userID string) error {
	row, err := tx.queryRow(`SELECT 1 FROM users WHERE id = ?`, userID)
	if err != nil {
		return err
	}
	var one int
	return row.Scan(&one)
}

// DeleteSession removes the session; deleting an unknown session is not an
// error (logout must be idempotent).
func (s *Store) DeleteSession(ctx context.Context, idHash []byte) error {
	_, err := s.exec(ctx, `DELETE FROM sessions WHERE id_hash = ?`, idHash)
	return mapErr("delete session", err)
}
