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
	_, err := s.exec(ctx, `INSERT INTO clients (`+clientCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		c.ID, nullBytes(c.SecretHash), c.Name, list(c.RedirectURIs), list(c.PostLogoutRedirectURIs),
		c.Public, c.PKCERequired, unix(c.CreatedAt))
	return mapErr("create client", err)
}

// ClientByID returns the client or ErrNotFound.
func (s *Store) ClientByID(ctx context.Context, id string) (storage.Client, error) {
	return one(ctx, s, "client by id", scanClient, `SELECT `+clientCols+` FROM clients WHERE id = $1`, id)
}

// ListClients returns all clients ordered by id (byte order).
func (s *Store) ListClients(ctx context.Context) ([]storage.Client, error) {
	return all(ctx, s, "list clients", scanClient, `SELECT `+clientCols+` FROM clients ORDER BY id COLLATE "C"`)
}

// DeleteClient removes the client together with its auth requests and
// tokens (protocol state has no foreign key to clients, so this is done
// here, in one transaction). ErrNotFound for an unknown id.
//
// It first takes the client's advisory lock, which every rotation of one
// of the client's refresh tokens holds in shared mode (RotateRefreshToken):
// a rotation in flight commits before the deletes below take their
// snapshots (and they delete the token it adds), and a later one finds its
// old token gone. An advisory lock rather than the clients row: the
// rotations of every user of a client would all lock that one row.
//
// Before the client's lock it takes lockEnd on every user with a request
// or a token at the client: the order of every other path (users, then
// the client for a rotation, then requests and tokens), so that a code's
// reuse or an ending in flight on the same rows never waits in a circle
// with it (second review, finding 4: a deadlock with a reuse). An
// operator's action over the whole client: maintenanceTimeout.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	err := s.maintain(ctx, func(tx *txn) error {
		if err := lockUsersWhere(tx, `SELECT user_id FROM auth_requests WHERE client_id = $1
			UNION SELECT user_id FROM refresh_tokens WHERE client_id = $1
			UNION SELECT user_id FROM access_tokens WHERE client_id = $1`, id); err != nil {
			return err
		}
		if _, err := tx.exec(`SELECT pg_advisory_xact_lock($1, hashtext($2))`, clientLockClass, id); err != nil {
			return err
		}
		n, err := tx.exec(`DELETE FROM clients WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if n == 0 {
			return storage.ErrNotFound
		}
		for _, q := range []string{
			`DELETE FROM access_tokens WHERE client_id = $1`,
			`DELETE FROM refresh_tokens WHERE client_id = $1`,
			`DELETE FROM auth_requests WHERE client_id = $1`,
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

// authRequestRow is an auth request with its expiry as stored.
type authRequestRow struct {
	storage.AuthRequest
	expiresAt int64
}

func scanAuthRequest(sc scanner) (authRequestRow, error) {
	var r authRequestRow
	a := &r.AuthRequest
	var scopes, prompt, acrValues, uiLocales, amr string
	var maxAge *int64
	var passwordAt, authTime, created int64
	if err := sc.Scan(&a.ID, &a.ClientID, &a.RedirectURI, &scopes, &a.State, &a.Nonce, &a.ResponseType, &a.ResponseMode,
		&a.CodeChallenge, &a.CodeChallengeMethod, &prompt, &maxAge, &acrValues, &a.LoginHint, &a.HintSubject, &uiLocales,
		&a.Stage, &a.UserID, &a.BindingHash, &passwordAt, &a.PendingTOTP, &authTime, &amr, &a.ACR, &created, &r.expiresAt,
		&a.SessionHash); err != nil {
		return r, err
	}
	a.MaxAge = maxAge
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
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
			$23, $24, $25)`,
		a.ID, a.ClientID, a.RedirectURI, list(a.Scopes), a.State, a.Nonce, a.ResponseType,
		a.ResponseMode, a.CodeChallenge, a.CodeChallengeMethod, list(a.Prompt), maxAge, list(a.ACRValues), a.LoginHint, a.HintSubject,
		list(a.UILocales), stage, nullStr(a.UserID), nullBytes(a.BindingHash), unix(a.PasswordAt), unix(a.AuthTime), list(a.AMR), a.ACR,
		unix(a.CreatedAt), unix(a.ExpiresAt))
	return mapErr("create auth request", err)
}

// AuthRequestByID returns the request; ErrNotFound when unknown or expired
// (ExpiresAt <= now).
func (s *Store) AuthRequestByID(ctx context.Context, id string, now time.Time) (storage.AuthRequest, error) {
	r, err := one(ctx, s, "auth request by id", scanAuthRequest, `SELECT `+authRequestCols+` FROM auth_requests WHERE id = $1`, id)
	if err != nil {
		return storage.AuthRequest{}, err
	}
	if r.expiresAt <= now.Unix() {
		return storage.AuthRequest{}, fmt.Errorf("postgres: auth request by id: expired: %w", storage.ErrNotFound)
	}
	return r.AuthRequest, nil
}

// classify explains why a guarded UPDATE of auth request id changed no row:
// ErrNotFound when the request does not exist (or has expired, if now is
// given), ErrWrongState otherwise. It reads what is committed now, which
// includes the change of whichever transaction the UPDATE waited for.
func classify(tx *txn, id string, now *time.Time) error {
	var exp int64
	if err := tx.queryRow(`SELECT expires_at FROM auth_requests WHERE id = $1`, id).Scan(&exp); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
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
// is the state check: a concurrent transition of the same row makes it wait
// and re-check the clause on the row that transition left, so the
// transition is atomic.
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
		return errors.New("postgres: rebind auth request: empty binding hash")
	}
	return s.guarded(ctx, "rebind auth request", id, nil,
		`UPDATE auth_requests SET binding_hash = $1 WHERE id = $2 AND binding_hash = $3`, newHash, id, oldHash)
}

// PasswordVerified moves a live request from created or password_ok to
// password_ok for userID, dropping a pending TOTP secret of another user.
// ErrWrongState from enrolled and done; ErrNotFound when unknown, expired
// or when the user does not exist.
func (s *Store) PasswordVerified(ctx context.Context, id, userID string, now time.Time) error {
	return s.guarded(ctx, "password verified", id, &now,
		`UPDATE auth_requests SET stage = $1, password_at = $2,
			pending_totp = CASE WHEN user_id = $3 THEN pending_totp ELSE NULL END, user_id = $3
		WHERE id = $4 AND stage IN ($5, $6) AND expires_at > $7`,
		storage.StagePasswordOK, unix(now), userID, id, storage.StageCreated, storage.StagePasswordOK, now.Unix())
}

// CompleteTOTP, in one transaction: requires the live request in
// password_ok or enrolled for userID (ErrWrongState; ErrNotFound when
// unknown or expired), advances the user's TOTP last step to step
// (ErrReplay unless strictly later; the request keeps its stage), resets the TOTP
// failure counter and moves the request to done with auth_time=now, amr and
// acr. ErrNotFound when the user has no TOTP credential.
func (s *Store) CompleteTOTP(ctx context.Context, id, userID string, step int64, now time.Time, amr []string, acr string) error {
	err := s.write(ctx, func(tx *txn) error {
		if _, err := lockUser(tx, userID, lockStep); err != nil {
			return err
		}
		stage, owner, err := tx.liveStage(id, now)
		if err != nil {
			return err
		}
		if stage != storage.StagePasswordOK && stage != storage.StageEnrolled || owner != userID {
			return storage.ErrWrongState
		}
		// The guarded UPDATE is the replay check: it changes the row only if
		// step is strictly later than the last accepted one. Another
		// completion with the same step, on any replica, holds the row
		// until it commits; this UPDATE then re-checks last_step < step on
		// what it wrote and matches nothing.
		n, err := tx.exec(`UPDATE totp_credentials SET last_step = $1 WHERE user_id = $2 AND last_step < $1`, step, userID)
		if err != nil {
			return err
		}
		if n == 0 {
			var found int
			if err := tx.queryRow(`SELECT 1 FROM totp_credentials WHERE user_id = $1`, userID).Scan(&found); err != nil {
				return err // no credential: ErrNotFound
			}
			return storage.ErrReplay
		}
		if err := resetAttempt(tx, userID, storage.FactorTOTP, now); err != nil {
			return err
		}
		n, err = tx.exec(`UPDATE auth_requests SET stage = $1, auth_time = $2, amr = $3, acr = $4
			WHERE id = $5 AND stage = $6 AND user_id = $7`,
			storage.StageDone, unix(now), list(amr), acr, id, stage, userID)
		if err != nil {
			return err
		}
		if n != 1 {
			return storage.ErrWrongState // unreachable: liveStage holds the row
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
		return errors.New("postgres: complete from session: session without user or auth time")
	}
	err := s.write(ctx, func(tx *txn) error {
		if len(sess.IDHash) > 0 {
			// lockStep on the user first, as every step: a logout
			// (EndSession, lockEnd) either committed before, and the
			// session read below finds no row, or waits for this commit
			// and then cancels the request linked here.
			if _, err := lockUser(tx, sess.UserID, lockStep); err != nil {
				return err
			}
			var one int
			if err := tx.queryRow(`SELECT 1 FROM sessions WHERE id_hash = $1 AND user_id = $2 AND expires_at > $3`,
				sess.IDHash, sess.UserID, now.Unix()).Scan(&one); err != nil {
				return err // no row: ErrNotFound
			}
		}
		n, err := tx.exec(`UPDATE auth_requests SET stage = $1, user_id = $2, auth_time = $3, amr = $4, acr = $5, session_hash = $6
			WHERE id = $7 AND stage = $8 AND expires_at > $9`,
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
// transaction (storage.Store.OpenSession). lockStep on the user first, as
// every step: an ending (lockEnd) either committed before, and the
// request is cancelled, or waits for this commit and then deletes the
// session made here.
func (s *Store) OpenSession(ctx context.Context, id string, sess storage.Session) error {
	if len(sess.IDHash) == 0 || sess.UserID == "" {
		return errors.New("postgres: open session: session without id hash or user")
	}
	now := sess.CreatedAt
	err := s.write(ctx, func(tx *txn) error {
		if _, err := lockUser(tx, sess.UserID, lockStep); err != nil {
			return err
		}
		n, err := tx.exec(`UPDATE auth_requests SET session_hash = $1
			WHERE id = $2 AND stage = $3 AND user_id = $4 AND code_hash IS NULL AND expires_at > $5`,
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
		return errors.New("postgres: save auth code: empty code hash")
	}
	// expires_at > now: a sign-in cancelled after the callback read it
	// (cancelSignIns sets expires_at) gets no code; the UPDATE waits for a
	// cancelling transaction on the row and re-checks this on its result.
	return s.guarded(ctx, "save auth code", id, &now,
		`UPDATE auth_requests SET code_hash = $1, code_expires_at = $2
		WHERE id = $3 AND stage = $4 AND code_hash IS NULL AND user_id IS NOT NULL AND auth_time <> 0 AND expires_at > $5
		AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = auth_requests.user_id AND (u.disabled_at <> 0 OR u.must_change_password))`,
		codeHash, unix(expiresAt), id, storage.StageDone, now.Unix())
}

// AuthRequestByCodeHash returns the request that holds the code, in
// whatever state (used, expired); ErrNotFound when no request has it. It
// changes nothing.
func (s *Store) AuthRequestByCodeHash(ctx context.Context, codeHash []byte) (storage.AuthRequest, error) {
	if len(codeHash) == 0 {
		return storage.AuthRequest{}, fmt.Errorf("postgres: auth request by code: %w", storage.ErrNotFound)
	}
	r, err := one(ctx, s, "auth request by code", scanAuthRequest,
		`SELECT `+authRequestCols+` FROM auth_requests WHERE code_hash = $1`, codeHash)
	return r.AuthRequest, err
}

// ConsumeAuthCode marks the code used and returns its request, in one
// transaction. A used code (even an expired one) revokes every token issued
// from the request, including later links of its refresh families, and
// returns ErrReused; an unused expired code or an unknown one ErrNotFound.
func (s *Store) ConsumeAuthCode(ctx context.Context, codeHash []byte, now time.Time) (storage.AuthRequest, error) {
	if len(codeHash) == 0 {
		return storage.AuthRequest{}, fmt.Errorf("postgres: consume auth code: %w", storage.ErrNotFound)
	}
	var out storage.AuthRequest
	err := s.write(ctx, func(tx *txn) error {
		// The code's user first (lockEnd), then the request's row: the
		// order of every path that takes both (revocations, token
		// inserts). A reuse marks the row and then needs the user; taking
		// the user only then would wait in a circle with an ending, which
		// holds the user and then marks the row, and a deadlock costs a
		// second and can abort the reuse's revocation. FOR UPDATE rather
		// than lockStep: two reuses upgrading a shared lock would deadlock
		// on each other.
		// One round trip on the token endpoint's path: the user found
		// through the code and locked in the same statement (no row: an
		// unknown code, which the UPDATE below reports).
		var one int
		if err := tx.queryRow(`SELECT 1 FROM users WHERE id = (SELECT user_id FROM auth_requests WHERE code_hash = $1) `+string(lockEnd),
			codeHash).Scan(&one); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		// Exactly one redemption matches: a concurrent one holds the row
		// until it commits, and this UPDATE then finds code_used_at set.
		// Store at least 1 so that "used" is never confused with 0 = unused.
		r, err := scanAuthRequest(tx.queryRow(`UPDATE auth_requests SET code_used_at = $1
			WHERE code_hash = $2 AND code_used_at = 0 AND code_expires_at > $3
			RETURNING `+authRequestCols, max(now.Unix(), 1), codeHash, now.Unix()))
		if err == nil {
			out = r.AuthRequest
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		var id string
		var used int64
		if err := tx.queryRow(`SELECT id, code_used_at FROM auth_requests WHERE code_hash = $1`,
			codeHash).Scan(&id, &used); err != nil {
			return err // ErrNoRows: ErrNotFound
		}
		if used == 0 {
			return storage.ErrNotFound // unused but expired
		}
		if err := revokeAuthRequestTokens(tx, id, now); err != nil {
			return err
		}
		return commitThen{storage.ErrReused}
	})
	if err != nil {
		return storage.AuthRequest{}, mapErr("consume auth code", err)
	}
	return out, nil
}

// revokeAuthRequestTokens revokes the access tokens issued from auth request
// id and every refresh family that started from it, with their access
// tokens. It first takes lockEnd on the users concerned, so that a
// rotation of one of those families in flight commits before the revoking
// statements read (and they revoke its new token), and a later one finds
// its token revoked.
func revokeAuthRequestTokens(tx *txn, id string, now time.Time) error {
	// The users first, then the request's row: the order of every other
	// path that takes both (an ending, EndSession and EndUserSessions; a
	// token insert, requestSession), so none waits in a circle. A deadlock
	// would cost a second on deadlock_timeout and could abort this reuse
	// and with it the revocation.
	if err := lockUsersWhere(tx, `SELECT user_id FROM auth_requests WHERE id = $1
		UNION SELECT user_id FROM refresh_tokens WHERE family_id IN (
			SELECT family_id FROM refresh_tokens WHERE auth_request_id = $1)`, id); err != nil {
		return err
	}
	// Tokens of this request not stored yet are refused.
	if _, err := tx.exec(`UPDATE auth_requests SET tokens_revoked_at = $1 WHERE id = $2`, revokedAt(now), id); err != nil {
		return err
	}
	t := revokedAt(now)
	if _, err := tx.exec(`UPDATE access_tokens SET revoked_at = $1
		WHERE revoked_at = 0 AND (auth_request_id = $2 OR refresh_token_id IN (
			SELECT id FROM refresh_tokens WHERE family_id IN (
				SELECT family_id FROM refresh_tokens WHERE auth_request_id = $2)))`, t, id); err != nil {
		return err
	}
	_, err := tx.exec(`UPDATE refresh_tokens SET revoked_at = $1
		WHERE revoked_at = 0 AND family_id IN (SELECT family_id FROM refresh_tokens WHERE auth_request_id = $2)`, t, id)
	return err
}

// revokedAt is the stored revocation time: at least 1, since 0 means "not
// revoked".
func revokedAt(now time.Time) int64 { return max(now.Unix(), 1) }

// liveStage reads the stage and account of auth request id inside the
// transaction and holds its row lock until the commit: ErrNotFound when
// there is none or it has expired at now, so that a completing step is
// decided on a request nothing else changes meanwhile.
func (t *txn) liveStage(id string, now time.Time) (stage, owner string, err error) {
	var exp int64
	if err := t.queryRow(`SELECT stage, COALESCE(user_id, ''), expires_at FROM auth_requests WHERE id = $1 FOR UPDATE`,
		id).Scan(&stage, &owner, &exp); err != nil {
		return "", "", err // ErrNoRows maps to ErrNotFound
	}
	if exp <= now.Unix() {
		return "", "", storage.ErrNotFound
	}
	return stage, owner, nil
}
