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
// Clients

const clientCols = `id, secret_hash, name, redirect_uris, post_logout_redirect_uris, public, pkce_required, created_at`

func scanClient(sc scanner) (storage.Client, error) {
	var c storage.Client
	var redirects, postLogout string
	var created int64
	if err := sc.Scan(&c.ID, &c.SecretHash, &c.Name, &redirects, &postLogout, &c.Public, &c.PKCERequired, &created); err != nil {
		return c, err
	}
	c.CreatedAt = fromUnix(created)
	var err error
	if c.RedirectURIs, err = unlist(redirects); err != nil {
		return c, err
	}
	c.PostLogoutRedirectURIs, err = unlist(postLogout)
	return c, err
}

// CreateClient inserts c; ErrConflict when the id exists.
func (s *Store) CreateClient(ctx context.Context, c storage.Client) error {
	_, err := s.exec(ctx, `INSERT INTO clients (`+clientCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, nullBytes(c.SecretHash), c.Name, list(c.RedirectURIs), list(c.PostLogoutRedirectURIs),
		boolInt(c.Public), boolInt(c.PKCERequired), unix(c.CreatedAt))
	return mapErr("create client", err)
}

// ClientByID returns the client or ErrNotFound.
func (s *Store) ClientByID(ctx context.Context, id string) (storage.Client, error) {
	return one(ctx, s, "client by id", scanClient, `SELECT `+clientCols+` FROM clients WHERE id = ?`, id)
}

// ListClients returns all clients ordered by id.
func (s *Store) ListClients(ctx context.Context) ([]storage.Client, error) {
	return all(ctx, s, "list clients", scanClient, `SELECT `+clientCols+` FROM clients ORDER BY id`)
}

// DeleteClient removes the client together with its auth requests and
// tokens (protocol state has no foreign key to clients, so this is done
// here, in one transaction). ErrNotFound for an unknown id.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	err := s.write(ctx, func(tx *txn) error {
		n, err := tx.exec(`DELETE FROM clients WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n == 0 {
			return storage.ErrNotFound
		}
		for _, q := range []string{
			`DELETE FROM access_tokens WHERE client_id = ?`,
			`DELETE FROM refresh_tokens WHERE client_id = ?`,
			`DELETE FROM auth_requests WHERE client_id = ?`,
		} {
			if _, err := tx.exec(q, id); err != nil {
				return err
			}
		}
		return nil
	})
	return mapErr("delete client", err)
}

// ---------------------------------------------------------------------------
// Auth requests

const authRequestCols = `id, client_id, redirect_uri, scopes, state, nonce, response_type, response_mode,
	code_challenge, code_challenge_method, prompt, max_age, acr_values, login_hint, hint_subject, ui_locales,
	stage, COALESCE(user_id, ''), binding_hash, password_at, pending_totp, auth_time, amr, acr, created_at, expires_at,
	session_hash`

// authRequestRow is an auth request with the code columns, which the
// storage type does not carry.
type authRequestRow struct {
	storage.AuthRequest
	codeExpiresAt int64
	codeUsedAt    int64
	expiresAt     int64
}

const authRequestRowCols = authRequestCols + `, code_expires_at, code_used_at`

func scanAuthRequest(sc scanner, withCode bool) (authRequestRow, error) {
	var r authRequestRow
	a := &r.AuthRequest
	var scopes, prompt, acrValues, uiLocales, amr string
	var maxAge sql.NullInt64
	var passwordAt, authTime, created int64
	dest := []any{&a.ID, &a.ClientID, &a.RedirectURI, &scopes, &a.State, &a.Nonce, &a.ResponseType, &a.ResponseMode,
		&a.CodeChallenge, &a.CodeChallengeMethod, &prompt, &maxAge, &acrValues, &a.LoginHint, &a.HintSubject, &uiLocales,
		&a.Stage, &a.UserID, &a.BindingHash, &passwordAt, &a.PendingTOTP, &authTime, &amr, &a.ACR, &created, &r.expiresAt,
		&a.SessionHash}
	if withCode {
		dest = append(dest, &r.codeExpiresAt, &r.codeUsedAt)
	}
	if err := sc.Scan(dest...); err != nil {
		return r, err
	}
	if maxAge.Valid {
		v := maxAge.Int64
		a.MaxAge = &v
	}
	a.PasswordAt, a.AuthTime = fromUnix(passwordAt), fromUnix(authTime)
	a.CreatedAt, a.ExpiresAt = fromUnix(created), fromUnix(r.expiresAt)
	for _, l := range []struct {
		dst *[]string
		src string
	}{{&a.Scopes, scopes}, {&a.Prompt, prompt}, {&a.ACRValues, acrValues}, {&a.UILocales, uiLocales}, {&a.AMR, amr}} {
		v, err := unlist(l.src)
		if err != nil {
			return r, err
		}
		*l.dst = v
	}
	return r, nil
}

// CreateAuthRequest inserts a; an empty Stage is stored as created.
// ErrConflict when the id exists.
func (s *Store) CreateAuthRequest(ctx context.Context, a storage.AuthRequest) error {
	stage := a.Stage
	if stage == "" {
		stage = storage.StageCreated
	}
	var maxAge any
	if a.MaxAge != nil {
		maxAge = *a.MaxAge
	}
	_, err := s.exec(ctx, `INSERT INTO auth_requests (id, client_id, redirect_uri, scopes, state, nonce, response_type,
		response_mode, code_challenge, code_challenge_method, prompt, max_age, acr_values, login_hint, hint_subject,
		ui_locales, stage, user_id, binding_hash, password_at, auth_time, amr, acr, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.ClientID, a.RedirectURI, list(a.Scopes), a.State, a.Nonce, a.ResponseType,
		a.ResponseMode, a.CodeChallenge, a.CodeChallengeMethod, list(a.Prompt), maxAge, list(a.ACRValues), a.LoginHint, a.HintSubject,
		list(a.UILocales), stage, nullStr(a.UserID), nullBytes(a.BindingHash), unix(a.PasswordAt), unix(a.AuthTime), list(a.AMR), a.ACR,
		unix(a.CreatedAt), unix(a.ExpiresAt))
	return mapErr("create auth request", err)
}

// AuthRequestByID returns the request; ErrNotFound when unknown or expired
// (ExpiresAt <= now).
func (s *Store) AuthRequestByID(ctx context.Context, id string, now time.Time) (storage.AuthRequest, error) {
	row, err := s.queryRow(ctx, `SELECT `+authRequestCols+` FROM auth_requests WHERE id = ?`, id)
	if err != nil {
		return storage.AuthRequest{}, mapErr("auth request by id", err)
	}
	r, err := scanAuthRequest(row, false)
	if err != nil {
		return storage.AuthRequest{}, mapErr("auth request by id", err)
	}
	if r.expiresAt <= now.Unix() {
		return storage.AuthRequest{}, fmt.Errorf("sqlite: auth request by id: expired: %w", storage.ErrNotFound)
	}
	return r.AuthRequest, nil
}

// classify explains why a guarded UPDATE of auth request id changed no row:
// ErrNotFound when the request does not exist (or has expired, if now is
// given), ErrWrongState otherwise.
func classify(tx *txn, id string, now *time.Time) error {
	row, err := tx.queryRow(`SELECT expires_at FROM auth_requests WHERE id = ?`, id)
	if err != nil {
		return err
	}
	var exp int64
	if err := row.Scan(&exp); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return storage.ErrNotFound
		}
		return err
	}
	if now != nil && exp <= now.Unix() {
		return storage.ErrNotFound
	}
	return storage.ErrWrongState
}

// guarded runs one conditional UPDATE of auth request id and, when it
// changed nothing, reports why (see classify). The UPDATE's own WHERE clause
// is the state check, so the transition is atomic.
func (s *Store) guarded(ctx context.Context, op, id string, now *time.Time, query string, args ...any) error {
	err := s.write(ctx, func(tx *txn) error {
		n, err := tx.exec(query, args...)
		if err != nil {
			return err
		}
		if n == 0 {
			return classify(tx, id, now)
		}
		return nil
	})
	return mapErr(op, err)
}

// RebindAuthRequest swaps the binding hash from oldHash to newHash.
func (s *Store) RebindAuthRequest(ctx context.Context, id string, oldHash, newHash []byte) error {
	if len(oldHash) == 0 || len(newHash) == 0 {
		return errors.New("sqlite: rebind auth request: empty binding hash")
	}
	return s.guarded(ctx, "rebind auth request", id, nil,
		`UPDATE auth_requests SET binding_hash = ? WHERE id = ? AND binding_hash = ?`, newHash, id, oldHash)
}

// PasswordVerified moves a live request from created or password_ok to
// password_ok for userID, dropping a pending TOTP secret of another user.
// ErrWrongState from enrolled and done; ErrNotFound when unknown, expired
// or when the user does not exist.
func (s *Store) PasswordVerified(ctx context.Context, id, userID string, now time.Time) error {
	return s.guarded(ctx, "password verified", id, &now,
		`UPDATE auth_requests SET stage = ?, password_at = ?,
			pending_totp = CASE WHEN user_id = ? THEN pending_totp ELSE NULL END, user_id = ?
		WHERE id = ? AND stage IN (?, ?) AND expires_at > ?`,
		storage.StagePasswordOK, unix(now), userID, userID, id, storage.StageCreated, storage.StagePasswordOK, now.Unix())
}

// CompleteTOTP, in one transaction: requires the live request in
// password_ok or enrolled for userID (ErrWrongState; ErrNotFound when
// unknown or expired), advances the user's TOTP last step to step
// (ErrReplay unless strictly later; the request keeps its stage), resets the TOTP
// failure counter and moves the request to done with auth_time=now, amr and
// acr. ErrNotFound when the user has no TOTP credential.
func (s *Store) CompleteTOTP(ctx context.Context, id, userID string, step int64, now time.Time, amr []string, acr string) error {
	err := s.write(ctx, func(tx *txn) error {
		stage, owner, err := tx.liveStage(id, now)
		if err != nil {
			return err
		}
		if stage != storage.StagePasswordOK && stage != storage.StageEnrolled || owner != userID {
			return storage.ErrWrongState
		}
		// The guarded UPDATE is the replay check: it changes the row only if
		// step is strictly later than the last accepted one.
		n, err := tx.exec(`UPDATE totp_credentials SET last_step = ? WHERE user_id = ? AND last_step < ?`, step, userID, step)
		if err != nil {
			return err
		}
		if n == 0 {
			row, err := tx.queryRow(`SELECT 1 FROM totp_credentials WHERE user_id = ?`, userID)
			if err != nil {
				return err
			}
			var found int
			if err := row.Scan(&found); err != nil {
				return err // no credential: ErrNotFound
			}
			return storage.ErrReplay
		}
		if err := resetAttempt(tx, userID, storage.FactorTOTP, now); err != nil {
			return err
		}
		n, err = tx.exec(`UPDATE auth_requests SET stage = ?, auth_time = ?, amr = ?, acr = ?
			WHERE id = ? AND stage = ? AND user_id = ?`,
			storage.StageDone, unix(now), list(amr), acr, id, stage, userID)
		if err != nil {
			return err
		}
		if n != 1 {
			return storage.ErrWrongState // unreachable under the write lock
		}
		return nil
	})
	return mapErr("complete totp", err)
}

// CompleteFromSession moves a request from created to done for the
// session's user, copying auth_time, amr and acr from the session.
// ErrWrongState from any other stage.
func (s *Store) CompleteFromSession(ctx context.Context, id string, sess storage.Session, now time.Time) error {
	if sess.UserID == "" || sess.AuthTime.IsZero() {
		return errors.New("sqlite: complete from session: session without user or auth time")
	}
	err := s.write(ctx, func(tx *txn) error {
		if len(sess.IDHash) > 0 {
			// In the writing transaction (one writer at a time): a logout
			// either ended the session before, or runs after and cancels
			// the request linked here.
			row, err := tx.queryRow(`SELECT 1 FROM sessions WHERE id_hash = ? AND user_id = ? AND expires_at > ?`,
				sess.IDHash, sess.UserID, now.Unix())
			if err != nil {
				return err
			}
			var one int
			if err := row.Scan(&one); err != nil {
				return err // no row: ErrNotFound
			}
		}
		n, err := tx.exec(`UPDATE auth_requests SET stage = ?, user_id = ?, auth_time = ?, amr = ?, acr = ?, session_hash = ?
			WHERE id = ? AND stage = ? AND expires_at > ?`,
			storage.StageDone, sess.UserID, unix(sess.AuthTime), list(sess.AMR), sess.ACR, nullBytes(sess.IDHash), id,
			storage.StageCreated, now.Unix())
		if err != nil {
			return err
		}
		if n == 0 {
			return classify(tx, id, &now)
		}
		return nil
	})
	return mapErr("complete from session", err)
}

// OpenSession creates sess and links the done request id to it in one
// transaction (storage.Store.OpenSession): an ending that cancelled the
// request after its second factor leaves no session behind.
func (s *Store) OpenSession(ctx context.Context, id string, sess storage.Session) error {
	if len(sess.IDHash) == 0 || sess.UserID == "" {
		return errors.New("sqlite: open session: session without id hash or user")
	}
	now := sess.CreatedAt
	err := s.write(ctx, func(tx *txn) error {
		n, err := tx.exec(`UPDATE auth_requests SET session_hash = ?
			WHERE id = ? AND stage = ? AND user_id = ? AND code_hash IS NULL AND expires_at > ?`,
			sess.IDHash, id, storage.StageDone, sess.UserID, now.Unix())
		if err != nil {
			return err
		}
		if n == 0 {
			return classify(tx, id, &now)
		}
		_, err = tx.exec(`INSERT INTO sessions (`+sessionCols+`) VALUES (`+sessionValues+`)`, sessionArgs(sess)...)
		return err
	})
	return mapErr("open session", err)
}

// SaveAuthCode stores the code's hash on a done request that has no code
// yet; ErrWrongState otherwise, ErrConflict if the hash is already in use.
func (s *Store) SaveAuthCode(ctx context.Context, id string, codeHash []byte, now, expiresAt time.Time) error {
	if len(codeHash) == 0 {
		return errors.New("sqlite: save auth code: empty code hash")
	}
	// expires_at > now: a sign-in cancelled after the callback read it
	// (cancelSignIns sets expires_at) gets no code; nor does a disabled
	// account, or one that must choose a new password first.
	return s.guarded(ctx, "save auth code", id, &now,
		`UPDATE auth_requests SET code_hash = ?, code_expires_at = ?
		WHERE id = ? AND stage = ? AND code_hash IS NULL AND user_id IS NOT NULL AND auth_time <> 0 AND expires_at > ?
		AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = auth_requests.user_id AND (u.disabled_at <> 0 OR u.must_change_password <> 0))`,
		codeHash, unix(expiresAt), id, storage.StageDone, now.Unix())
}

// AuthRequestByCodeHash returns the request that holds the code, in
// whatever state (used, expired); ErrNotFound when no request has it. It
// changes nothing.
func (s *Store) AuthRequestByCodeHash(ctx context.Context, codeHash []byte) (storage.AuthRequest, error) {
	if len(codeHash) == 0 {
		return storage.AuthRequest{}, fmt.Errorf("sqlite: auth request by code: %w", storage.ErrNotFound)
	}
	row, err := s.queryRow(ctx, `SELECT `+authRequestCols+` FROM auth_requests WHERE code_hash = ?`, codeHash)
	if err != nil {
		return storage.AuthRequest{}, mapErr("auth request by code", err)
	}
	r, err := scanAuthRequest(row, false)
	return r.AuthRequest, mapErr("auth request by code", err)
}

// ConsumeAuthCode marks the code used and returns its request, in one
// transaction. A used code (even an expired one) revokes every token issued
// from the request, including later links of its refresh families, and
// returns ErrReused; an unused expired code or an unknown one ErrNotFound.
func (s *Store) ConsumeAuthCode(ctx context.Context, codeHash []byte, now time.Time) (storage.AuthRequest, error) {
	if len(codeHash) == 0 {
		return storage.AuthRequest{}, fmt.Errorf("sqlite: consume auth code: %w", storage.ErrNotFound)
	}
	var out storage.AuthRequest
	err := s.write(ctx, func(tx *txn) error {
		row, err := tx.queryRow(`SELECT `+authRequestRowCols+` FROM auth_requests WHERE code_hash = ?`, codeHash)
		if err != nil {
			return err
		}
		r, err := scanAuthRequest(row, true)
		if err != nil {
			return err
		}
		if r.codeUsedAt != 0 {
			if err := revokeAuthRequestTokens(tx, r.ID, now); err != nil {
				return err
			}
			return commitThen{storage.ErrReused}
		}
		if r.codeExpiresAt <= now.Unix() {
			return storage.ErrNotFound
		}
		// Store at least 1 so that "used" is never confused with 0 = unused.
		if _, err := tx.exec(`UPDATE auth_requests SET code_used_at = ? WHERE id = ? AND code_used_at = 0`,
			max(now.Unix(), 1), r.ID); err != nil {
			return err
		}
		out = r.AuthRequest
		return nil
	})
	if err != nil {
		return storage.AuthRequest{}, mapErr("consume auth code", err)
	}
	return out, nil
}

// revokeAuthRequestTokens revokes the access tokens issued from auth request
// id and every refresh family that started from it, with their access
// tokens.
func revokeAuthRequestTokens(tx *txn, id string, now time.Time) error {
	t := revokedAt(now)
	// Tokens of this request not stored yet are refused (requestSession).
	if _, err := tx.exec(`UPDATE auth_requests SET tokens_revoked_at = ? WHERE id = ?`, t, id); err != nil {
		return err
	}
	if _, err := tx.exec(`UPDATE access_tokens SET revoked_at = ?
		WHERE revoked_at = 0 AND (auth_request_id = ? OR refresh_token_id IN (
			SELECT id FROM refresh_tokens WHERE family_id IN (
				SELECT family_id FROM refresh_tokens WHERE auth_request_id = ?)))`, t, id, id); err != nil {
		return err
	}
	_, err := tx.exec(`UPDATE refresh_tokens SET revoked_at = ?
		WHERE revoked_at = 0 AND family_id IN (SELECT family_id FROM refresh_tokens WHERE auth_request_id = ?)`, t, id)
	return err
}

// revokedAt is the stored revocation time: at least 1, since 0 means "not
// revoked".
func revokedAt(now time.Time) int64 { return max(now.Unix(), 1) }

// liveStage reads the stage and account of auth request id inside the
// transaction: ErrNotFound when there is none or it has expired at now,
// so that a completing step is decided on what the transaction sees.
func (t *txn) liveStage(id string, now time.Time) (stage, owner string, err error) {
	row, err := t.queryRow(`SELECT stage, COALESCE(user_id, ''), expires_at FROM auth_requests WHERE id = ?`, id)
	if err != nil {
		return "", "", err
	}
	var exp int64
	if err := row.Scan(&stage, &owner, &exp); err != nil {
		return "", "", err // ErrNoRows maps to ErrNotFound
	}
	if exp <= now.Unix() {
		return "", "", storage.ErrNotFound
	}
	return stage, owner, nil
}
