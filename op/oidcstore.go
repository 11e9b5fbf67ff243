package op

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	zop "github.com/zitadel/oidc/v3/pkg/op"

	"github.com/totp-idp/idp/op/account"
	"github.com/totp-idp/idp/op/audit"
	"github.com/totp-idp/idp/op/login"
	"github.com/totp-idp/idp/op/secret"
	"github.com/totp-idp/idp/storage"
)

// oidcStorage implements zitadel's op.Storage over storage.Store and
// closes the library's gaps listed in docs/DESIGN.md, "The zitadel seam": PKCE S256
// required, atomic single-use codes, one code per auth request, refresh
// rotation with reuse detection, expiry and revocation checked everywhere,
// client ownership checked on revocation and introspection, the JWT-bearer
// grant refused.
type oidcStorage struct {
	s *Server
}

var _ zop.Storage = (*oidcStorage)(nil)
var _ zop.CanSetUserinfoFromRequest = (*oidcStorage)(nil)

// errPKCERequired: RFC 9700 §2.1.1; S256 only, plain is refused.
var errPKCERequired = oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method=S256 is required for this client")

func (o *oidcStorage) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, hintSub string) (zop.AuthRequest, error) {
	s := o.s
	if err := checkAuthRequestLimits(req); err != nil {
		return nil, err
	}
	client, err := s.freshClient(ctx, req.ClientID)
	busy(ctx, err)
	if err != nil {
		return nil, err
	}
	if req.CodeChallenge != "" && req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, errPKCERequired
	}
	if req.CodeChallenge == "" && (client.Public || client.PKCERequired) {
		return nil, errPKCERequired
	}
	if req.ResponseType != oidc.ResponseTypeCode {
		return nil, oidc.ErrUnauthorizedClient().WithDescription("only response_type=code is supported")
	}
	now := s.cfg.now()
	a := storage.AuthRequest{
		ID:                  secret.New(24),
		ClientID:            req.ClientID,
		RedirectURI:         req.RedirectURI,
		Scopes:              keepSupportedScopes(req.Scopes),
		State:               req.State,
		Nonce:               req.Nonce,
		ResponseType:        string(req.ResponseType),
		ResponseMode:        string(req.ResponseMode),
		CodeChallenge:       req.CodeChallenge,
		CodeChallengeMethod: string(req.CodeChallengeMethod),
		Prompt:              []string(req.Prompt),
		ACRValues:           []string(req.ACRValues),
		LoginHint:           req.LoginHint,
		HintSubject:         hintSub,
		Stage:               storage.StageCreated,
		CreatedAt:           now,
		ExpiresAt:           now.Add(s.cfg.AuthRequestLifetime),
	}
	if req.MaxAge != nil {
		v := int64(*req.MaxAge)
		a.MaxAge = &v
	}
	for _, t := range req.UILocales {
		a.UILocales = append(a.UILocales, t.String())
	}
	if slices.Contains(a.Prompt, oidc.PromptNone) {
		// OpenID Connect Core §3.1.2.1: without a usable session the
		// answer is login_required, never a page.
		if _, ok := s.login.UsableSession(ctx, infoFrom(ctx).ssoCookie, &a); !ok {
			return nil, oidc.ErrLoginRequired()
		}
	}
	// The request belongs to the browser that called /authorize: its flow
	// cookie is set on this answer (authorizeBinding). Without one the
	// request can never be used.
	flowSecret := secret.New(32)
	a.BindingHash = secret.Hash(flowSecret)
	if err := busy(ctx, s.store.CreateAuthRequest(ctx, a)); err != nil {
		return nil, err
	}
	if bind := infoFrom(ctx).bindFlow; bind != nil {
		bind(a.ID, flowSecret)
	}
	return &authRequest{a: a, acr: s.cfg.ACR}, nil
}

func (o *oidcStorage) AuthRequestByID(ctx context.Context, id string) (zop.AuthRequest, error) {
	a, err := o.s.store.AuthRequestByID(ctx, id, o.s.cfg.now())
	busy(ctx, err)
	if err != nil {
		return nil, err
	}
	return &authRequest{a: a, acr: o.s.cfg.ACR}, nil
}

// AuthRequestByCode redeems a code. The library calls it before it
// authenticates the client, so the client (authenticated by tokenClient)
// and the PKCE verifier are checked here first, with a lookup that changes
// nothing: whoever merely saw a code can neither burn it nor trigger the
// reuse revocation (RFC 6749 §4.1.3, RFC 7636 §4.6).
func (o *oidcStorage) AuthRequestByCode(ctx context.Context, code string) (zop.AuthRequest, error) {
	ri := infoFrom(ctx)
	info, err := o.s.store.AuthRequestByCodeHash(ctx, secret.Hash(code))
	busy(ctx, err)
	if err != nil {
		return nil, err
	}
	if ri.tokenClient == "" || ri.tokenClient != info.ClientID {
		return nil, oidc.ErrInvalidGrant().WithDescription("code not issued to this client")
	}
	if info.ClientID == account.ClientID {
		// The account page consumes its own codes at its callback; at the
		// token endpoint one would mint a grant no application holds
		// (review of the account page, F4).
		return nil, oidc.ErrInvalidGrant().WithDescription("code not redeemable here")
	}
	if info.CodeChallenge != "" && !secret.S256Matches(ri.codeVerifier, info.CodeChallenge) {
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid code_verifier")
	}
	a, err := o.s.store.ConsumeAuthCode(ctx, secret.Hash(code), o.s.cfg.now())
	busy(ctx, err)
	if errors.Is(err, storage.ErrReused) {
		// RFC 9700 §4.2.4 / oidcc-codereuse: the tokens issued from the
		// code are already revoked by the store.
		o.s.trail.Event(ctx, "code_reused", info.UserID, "", info.ClientID, "tokens issued from the code revoked")
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	if !a.Done() {
		return nil, storage.ErrWrongState
	}
	return &authRequest{a: a, acr: o.s.cfg.ACR}, nil
}

// SaveAuthCode stores one code per auth request, only once both factors are
// recorded (defence in depth behind Done()).
func (o *oidcStorage) SaveAuthCode(ctx context.Context, id, code string) error {
	if checked := infoFrom(ctx).callbackID; checked == "" || checked != id {
		// The library chose another request than the one whose browser
		// binding callbackBinding checked: never issue that code.
		o.s.log.ErrorContext(ctx, "auth code refused: request id differs from the checked callback id")
		return oidc.ErrAccessDenied().WithDescription("this sign-in cannot be completed here; start a new one")
	}
	now := o.s.cfg.now()
	err := o.s.store.SaveAuthCode(ctx, id, secret.Hash(code), now, now.Add(o.s.cfg.CodeLifetime))
	busy(ctx, err)
	if errors.Is(err, storage.ErrWrongState) {
		// The callback was hit again after its code was issued: no second
		// code, and a plain answer to the client instead of a server error.
		return oidc.ErrAccessDenied().WithDescription("this sign-in was already completed; start a new one")
	}
	if errors.Is(err, storage.ErrNotFound) {
		// Ended (a logout, an operator) or expired after the callback read
		// it: no code, and a plain answer.
		return oidc.ErrAccessDenied().WithDescription("this sign-in has ended; start a new one")
	}
	return err
}

// DeleteAuthRequest keeps the row: a consumed request must stay to detect
// code reuse; GC removes it after expiry.
func (o *oidcStorage) DeleteAuthRequest(context.Context, string) error { return nil }

func (o *oidcStorage) CreateAccessToken(ctx context.Context, req zop.TokenRequest) (string, time.Time, error) {
	at := o.newAccessToken(req)
	if err := busy(ctx, o.s.store.CreateAccessToken(ctx, at)); err != nil {
		return "", time.Time{}, revokedGrant(err)
	}
	return at.ID, at.ExpiresAt, nil
}

func (o *oidcStorage) newAccessToken(req zop.TokenRequest) storage.AccessToken {
	now := o.s.cfg.now()
	at := storage.AccessToken{
		ID:        secret.New(24),
		UserID:    req.GetSubject(),
		Scopes:    req.GetScopes(),
		Audience:  req.GetAudience(),
		CreatedAt: now,
		ExpiresAt: now.Add(o.s.cfg.AccessTokenLifetime),
	}
	switch r := req.(type) {
	case *authRequest:
		at.ClientID = r.a.ClientID
		at.AuthRequestID = r.a.ID
		at.SessionHash = r.a.SessionHash
	case *refreshRequest:
		at.ClientID = r.t.ClientID
		at.AuthRequestID = r.t.AuthRequestID
		at.SessionHash = r.t.SessionHash
	}
	return at
}

func (o *oidcStorage) CreateAccessAndRefreshTokens(ctx context.Context, req zop.TokenRequest, current string) (string, string, time.Time, error) {
	now := o.s.cfg.now()
	at := o.newAccessToken(req)
	value := secret.New(32)
	rt := storage.RefreshToken{
		ID:        secret.New(16),
		TokenHash: secret.Hash(value),
		UserID:    req.GetSubject(),
		Scopes:    req.GetScopes(),
		Audience:  req.GetAudience(),
		CreatedAt: now,
	}
	at.RefreshTokenID = rt.ID
	switch r := req.(type) {
	case *authRequest:
		if current != "" {
			return "", "", time.Time{}, errors.New("refresh token rotation without a refresh request")
		}
		rt.FamilyID = secret.New(16)
		rt.ClientID = r.a.ClientID
		rt.AMR, rt.ACR, rt.AuthTime = r.GetAMR(), r.GetACR(), r.a.AuthTime
		rt.AuthRequestID = r.a.ID
		rt.SessionHash = r.a.SessionHash
		rt.ExpiresAt = now.Add(o.s.cfg.RefreshTokenLifetime)
		if err := busy(ctx, o.s.store.CreateRefreshToken(ctx, rt, at)); err != nil {
			return "", "", time.Time{}, revokedGrant(err)
		}
	case *refreshRequest:
		old := r.t
		rt.FamilyID, rt.ClientID = old.FamilyID, old.ClientID
		rt.AMR, rt.ACR, rt.AuthTime = old.AMR, old.ACR, old.AuthTime
		rt.AuthRequestID = old.AuthRequestID
		rt.SessionHash = old.SessionHash
		// The family keeps its absolute expiry (RFC 9700 §4.14.2).
		rt.ExpiresAt = old.ExpiresAt
		err := o.s.store.RotateRefreshToken(ctx, secret.Hash(current), rt, at, now)
		busy(ctx, err)
		if errors.Is(err, storage.ErrReused) {
			o.s.trail.Event(ctx, "refresh_token_reused", old.UserID, "", old.ClientID, "token family revoked")
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token already used")
		}
		if errors.Is(err, storage.ErrNotFound) {
			// Revoked, expired or gone since it was read (a logout or
			// revoke-sessions racing this grant): the grant is invalid,
			// not a server error (RFC 6749 §5.2).
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token is no longer valid")
		}
		if err != nil {
			return "", "", time.Time{}, err
		}
	default:
		return "", "", time.Time{}, fmt.Errorf("unsupported token request %T", req)
	}
	return at.ID, value, at.ExpiresAt, nil
}

// TokenRequestByRefreshToken serves the refresh grant. The owner is checked
// with a lookup that changes nothing before the lookup that revokes a reused
// family: another client replaying a used token revokes nothing.
func (o *oidcStorage) TokenRequestByRefreshToken(ctx context.Context, value string) (zop.RefreshTokenRequest, error) {
	info, err := o.s.store.RefreshTokenInfo(ctx, secret.Hash(value))
	busy(ctx, err)
	if err != nil || info.ClientID != infoFrom(ctx).tokenClient {
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid refresh token")
	}
	t, err := o.s.store.RefreshTokenByHash(ctx, secret.Hash(value), o.s.cfg.now())
	busy(ctx, err)
	if errors.Is(err, storage.ErrReused) {
		o.s.trail.Event(ctx, "refresh_token_reused", info.UserID, "", info.ClientID, "token family revoked")
		return nil, oidc.ErrInvalidGrant().WithDescription("refresh token already used")
	}
	if err != nil {
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid refresh token")
	}
	return &refreshRequest{t: t}, nil
}

// TerminateSession is not used: the library prefers
// TerminateSessionFromRequest, which sees the whole request.
func (o *oidcStorage) TerminateSession(context.Context, string, string) error {
	return errors.New("end_session without its request")
}

// TerminateSessionFromRequest ends the SSO session the browser carries and
// revokes the tokens issued through it, never offline_access grants
// (RP-Initiated Logout 1.0 §2; an id_token_hint is no secret, so it alone
// revokes nothing). It ends the session only when the hint names this very
// session (same subject and auth_time) or the user confirmed on our page;
// otherwise it asks endSessionConfirm to show that page.
func (o *oidcStorage) TerminateSessionFromRequest(ctx context.Context, es *zop.EndSessionRequest) (string, error) {
	s := o.s
	ri := infoFrom(ctx)
	now := s.cfg.now()
	if ri.postLogoutURI != "" && !o.postLogoutRegistered(ctx, es.ClientID, ri.postLogoutURI) {
		// The library lets a native client's loopback post-logout URI
		// differ in scheme, host and port; we match it exactly, like the
		// redirect URIs (RFC 9700 §4.1.3), and otherwise go to our own
		// signed-out page.
		es.RedirectURI = login.LoggedOutPath
	}
	// A logout that ends nothing (no live session in this browser: any
	// cookie-less request) writes no audit row, so anonymous requests
	// cannot fill the trail.
	if ri.ssoCookie == "" {
		return es.RedirectURI, nil
	}
	sess, err := s.store.SessionByHash(ctx, secret.Hash(ri.ssoCookie), now)
	busy(ctx, err)
	if errors.Is(err, storage.ErrNotFound) {
		return es.RedirectURI, nil
	}
	if err != nil {
		return "", err
	}
	// The library also accepts an expired hint; only a live ID token of
	// this very session skips the question (a leaked old one must not).
	hinted := es.IDTokenHintClaims != nil && es.UserID == sess.UserID &&
		es.IDTokenHintClaims.GetAuthTime().Unix() == sess.AuthTime.Unix() &&
		es.IDTokenHintClaims.GetExpiration().After(now)
	if !hinted && !ri.logoutConfirmed {
		// endSession holds back the redirect and asks the user.
		ri.logoutPending = true
		return es.RedirectURI, nil
	}
	n, err := s.store.EndSession(ctx, sess.IDHash, now)
	busy(ctx, err)
	if err != nil {
		return "", err
	}
	how := "id_token_hint of this session"
	if !hinted {
		how = "confirmed on the logout page"
	}
	s.trail.Event(ctx, "logout", sess.UserID, "", es.ClientID, how+"; "+audit.Plural(n, "token")+" revoked")
	return es.RedirectURI, nil
}

// postLogoutRegistered reports whether uri is exactly one of the client's
// registered post-logout redirect URIs.
func (o *oidcStorage) postLogoutRegistered(ctx context.Context, clientID, uri string) bool {
	c, err := o.s.clients.get(ctx, clientID)
	return err == nil && slices.Contains(c.PostLogoutRedirectURIs, uri)
}

// GetRefreshTokenInfo serves revocation; the client is authenticated by
// then. The lookup has no side effects.
func (o *oidcStorage) GetRefreshTokenInfo(ctx context.Context, clientID, value string) (string, string, error) {
	t, err := o.s.store.RefreshTokenInfo(ctx, secret.Hash(value))
	busy(ctx, err)
	if err != nil || t.ClientID != clientID {
		return "", "", zop.ErrInvalidRefreshToken
	}
	return t.UserID, t.ID, nil
}

// RevokeToken revokes a refresh token's family or an access token, only
// for the client it was issued to (RFC 7009 §2.1); unknown tokens are not
// an error. The library passes a refresh token's id, an access token's id,
// or, when the token_type_hint was wrong, the raw value: a wrong hint must
// not stop the search (RFC 7009 §2.1).
func (o *oidcStorage) RevokeToken(ctx context.Context, tokenOrID, userID, clientID string) *oidc.Error {
	now := o.s.cfg.now()
	rt, err := o.s.store.RefreshTokenByID(ctx, tokenOrID)
	busy(ctx, err)
	if err != nil {
		rt, err = o.s.store.RefreshTokenInfo(ctx, secret.Hash(tokenOrID))
		busy(ctx, err)
	}
	if err == nil {
		if rt.ClientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was issued to another client")
		}
		if err := busy(ctx, o.s.store.RevokeRefreshFamily(ctx, rt.FamilyID, now)); err != nil {
			return oidc.ErrServerError()
		}
		o.s.trail.Event(ctx, "token_revoked", rt.UserID, "", clientID, "refresh token family")
		return nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		// The lookup failed: "revoked" (RFC 7009 §2.2's 200 for an unknown
		// token) would be a lie the client relies on.
		return oidc.ErrServerError()
	}
	t, err := o.s.store.AccessTokenByID(ctx, tokenOrID, now)
	busy(ctx, err)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil // RFC 7009 §2.2: an unknown token is answered as revoked
	case err != nil:
		return oidc.ErrServerError()
	}
	if t.ClientID != clientID {
		return oidc.ErrInvalidClient().WithDescription("token was issued to another client")
	}
	if err := busy(ctx, o.s.store.RevokeAccessToken(ctx, t.ID, now)); err != nil {
		return oidc.ErrServerError()
	}
	o.s.trail.Event(ctx, "token_revoked", t.UserID, "", clientID, "access token")
	return nil
}

func (o *oidcStorage) SigningKey(ctx context.Context) (zop.SigningKey, error) {
	return o.s.keys.SigningKey(ctx)
}

func (o *oidcStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (o *oidcStorage) KeySet(ctx context.Context) ([]zop.Key, error) {
	return o.s.keys.KeySet(ctx)
}

// GetClientByClientID answers an unknown client with invalid_client: some
// library paths (end_session, the refresh grant) turn any other plain
// error into a 500.
func (o *oidcStorage) GetClientByClientID(ctx context.Context, id string) (zop.Client, error) {
	c, err := o.s.clients.get(ctx, id)
	busy(ctx, err)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client").WithParent(err)
	}
	if err != nil {
		return nil, err
	}
	return &client{c: c, cfg: &o.s.cfg}, nil
}

// AuthorizeClientIDSecret compares sha256(secret) with the stored digest in
// constant time; client secrets are random 256-bit values, so a fast hash
// is the right store (docs/DESIGN.md, performance budget).
func (o *oidcStorage) AuthorizeClientIDSecret(ctx context.Context, id, secret string) error {
	c, err := o.s.clients.get(ctx, id)
	if busy(ctx, err) != nil {
		return oidc.ErrInvalidClient()
	}
	if c.Public || !secretMatches(c, secret) {
		return oidc.ErrInvalidClient().WithDescription("client authentication failed")
	}
	return nil
}

// secretMatches compares sha256(presented) with the client's stored digest in
// constant time; a client without a secret matches nothing. It is the one
// client-secret check (AuthorizeClientIDSecret, tokenClient).
func secretMatches(c storage.Client, presented string) bool {
	return presented != "" && len(c.SecretHash) != 0 && subtle.ConstantTimeCompare(secret.Hash(presented), c.SecretHash) == 1
}

func (o *oidcStorage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's user claims. For the refresh
// grant it also restores acr, which the library sets only for an
// op.AuthRequest (CreateIDToken): OpenID Connect Core §12.2 keeps the
// original authentication's claims in a refreshed ID token. The refresh
// request must not pose as an op.AuthRequest instead: the library would
// then decide from its scopes whether to rotate the refresh token, and a
// client narrowing the scope would keep its old token usable.
func (o *oidcStorage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req zop.IDTokenRequest, scopes []string) error {
	if err := o.fillUserinfo(ctx, info, req.GetSubject(), scopes); err != nil {
		return err
	}
	if r, ok := req.(*refreshRequest); ok && r.t.ACR != "" {
		info.AppendClaims("acr", r.t.ACR)
	}
	return nil
}

// SetUserinfoFromToken serves /userinfo: the library only decrypts the
// opaque token, so expiry and revocation are checked here.
func (o *oidcStorage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	t, err := o.s.store.AccessTokenByID(ctx, tokenID, o.s.cfg.now())
	busy(ctx, err)
	if err != nil || t.UserID != subject {
		return errors.New("access token invalid, expired or revoked")
	}
	return o.fillUserinfo(ctx, info, t.UserID, t.Scopes)
}

// SetIntrospectionFromToken answers active only for a live token issued to
// the client asking (or naming it in its audience).
func (o *oidcStorage) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	t, err := o.s.store.AccessTokenByID(ctx, tokenID, o.s.cfg.now())
	busy(ctx, err)
	if err != nil || t.UserID != subject {
		return errors.New("access token invalid, expired or revoked")
	}
	if t.ClientID != clientID && !slices.Contains(t.Audience, clientID) {
		return errors.New("token not issued to this client")
	}
	var info oidc.UserInfo
	if err := o.fillUserinfo(ctx, &info, t.UserID, t.Scopes); err != nil {
		return err
	}
	resp.SetUserInfo(&info)
	resp.Scope = t.Scopes
	resp.ClientID = t.ClientID
	resp.TokenType = oidc.BearerToken
	resp.Expiration = oidc.FromTime(t.ExpiresAt)
	resp.IssuedAt = oidc.FromTime(t.CreatedAt)
	resp.Audience = t.Audience
	resp.Issuer = o.s.cfg.Issuer
	return nil
}

func (o *oidcStorage) fillUserinfo(ctx context.Context, info *oidc.UserInfo, userID string, scopes []string) error {
	u, err := o.s.store.UserByID(ctx, userID)
	busy(ctx, err)
	if err != nil {
		return fmt.Errorf("user %s: %w", userID, err)
	}
	info.Subject = u.ID
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeProfile:
			info.Name = u.Name
			info.PreferredUsername = u.Username
		case oidc.ScopeEmail:
			if u.Email != "" {
				info.Email = u.Email
				info.EmailVerified = oidc.Bool(u.EmailVerified)
			}
		}
	}
	return nil
}

func (o *oidcStorage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// errNoJWTBearer: the JWT-bearer grant (RFC 7523) is not offered.
var errNoJWTBearer = errors.New("the JWT bearer grant is not supported")

func (o *oidcStorage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errNoJWTBearer
}

func (o *oidcStorage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errNoJWTBearer
}

func (o *oidcStorage) Health(ctx context.Context) error { return o.s.store.Ping(ctx) }

// busy notes in the request that the store answered "try again"
// (storage.ErrBusy: busy past its retries, or unreachable), so that the
// route's wrapper answers 503 with Retry-After (unavailable) instead of
// the library's server_error; it returns err.
func busy(ctx context.Context, err error) error {
	if errors.Is(err, storage.ErrBusy) {
		infoFrom(ctx).storeBusy = true
	}
	return err
}

// revokedGrant is the answer to tokens the store refused because their
// code was revoked between its redemption and now (its reuse by a racing
// request, the user's sessions ended): the grant is invalid (RFC 6749
// §5.2), not a server error.
func revokedGrant(err error) error {
	if errors.Is(err, storage.ErrReused) {
		return oidc.ErrInvalidGrant().WithDescription("the authorization code was revoked")
	}
	if errors.Is(err, storage.ErrNotFound) {
		// The user was deleted between the redemption and the insert (the
		// tokens' foreign key): the grant is gone, not a server fault.
		return oidc.ErrInvalidGrant().WithDescription("the grant no longer exists")
	}
	return err
}

// freshClient reads the client from the store, not the cache (a client
// deleted a moment ago starts no sign-in); the account page's client is
// built in.
func (s *Server) freshClient(ctx context.Context, id string) (storage.Client, error) {
	if id == account.ClientID {
		return account.Client(s.cfg.Issuer), nil
	}
	return s.store.ClientByID(ctx, id)
}
