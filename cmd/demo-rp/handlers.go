package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// claimsView is what the home page shows about the logged-in user.
type claimsView struct {
	Subject       string
	Name          string
	Email         string
	EmailVerified string // "yes", "no" or "" when the claim is absent
	AMR           []string
	ACR           string
	AuthTime      time.Time
	Issuer        string
	Audience      []string
	Expiry        time.Time
	IssuedAt      time.Time
	HasOTP        bool
	HasMFA        bool
	TwoFactor     bool
	RawJSON       string
	Alg           string
	KeyID         string

	// Filled from the session when rendering.
	HasRefreshToken bool
	AccessExpiry    time.Time
	GrantedScope    string
	LoggedInAt      time.Time
	RefreshedAt     time.Time
	RefreshNote     string
}

func equalSecret(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (a *app) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   int(maxAge / time.Second),
		HttpOnly: true,
		Secure:   a.secureCookies,
		SameSite: http.SameSiteLaxMode,
	})
}

func (a *app) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   a.secureCookies,
		SameSite: http.SameSiteLaxMode,
	})
}

func (a *app) currentSession(r *http.Request) (session, string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return session{}, "", false
	}
	s, ok := a.sessions.get(c.Value)
	return s, c.Value, ok
}

// ---- GET / ----

func (a *app) handleHome(w http.ResponseWriter, r *http.Request) {
	data := pageData{Title: "Demo relying party"}
	if st := r.URL.Query().Get("state"); st != "" {
		// Back from the provider's end_session endpoint.
		if c, err := r.Cookie(logoutCookie); err == nil && equalSecret(st, c.Value) {
			data.Notice = "You have been logged out at the provider."
		} else {
			data.Warning = "Returned with a logout state this browser did not send; ignoring it."
		}
		a.clearCookie(w, logoutCookie)
	}
	s, _, ok := a.currentSession(r)
	if ok {
		v := s.claims
		v.HasRefreshToken = s.refreshToken != ""
		v.AccessExpiry = s.accessExpiry
		v.GrantedScope = s.grantedScope
		v.LoggedInAt = s.loggedInAt
		v.RefreshedAt = s.refreshedAt
		data.Session = &v
		data.CSRF = s.csrf
		data.Title = "Logged in"
	} else if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		// Unknown or expired session: drop the stale cookie.
		a.clearCookie(w, sessionCookie)
	}
	a.render(w, http.StatusOK, "home", data)
}

// ---- GET /login ----

func (a *app) handleLogin(w http.ResponseWriter, r *http.Request) {
	prov, err := a.provider(r.Context())
	if err != nil {
		a.renderProviderDown(w, err, "")
		return
	}
	if c, err := r.Cookie(flowCookie); err == nil {
		a.flows.remove(c.Value) // a newer login replaces an unfinished one
	}
	flowID := rand.Text()
	flow := loginFlow{
		state:    rand.Text(),
		nonce:    rand.Text(),
		verifier: oauth2.GenerateVerifier(),
	}
	if n := a.flows.put(flowID, flow); n > 0 {
		a.log.Warn("login flow store full, evicted oldest flows", "evicted", n)
	}
	a.setCookie(w, flowCookie, flowID, flowTTL)
	authURL := prov.oauth.AuthCodeURL(flow.state,
		oidc.Nonce(flow.nonce),
		oauth2.S256ChallengeOption(flow.verifier),
	)
	a.log.Info("login started", "scopes", strings.Join(a.cfg.Scopes, " "))
	http.Redirect(w, r, authURL, http.StatusFound)
}

// ---- GET /callback ----

func (a *app) handleCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()

	// The flow is consumed by the first callback that presents its cookie,
	// whatever the outcome: a state can be used exactly once.
	var (
		flow     loginFlow
		haveFlow bool
	)
	c, cookieErr := r.Cookie(flowCookie)
	if cookieErr == nil {
		flow, haveFlow = a.flows.take(c.Value)
		a.clearCookie(w, flowCookie)
	}
	stateOK := haveFlow && equalSecret(q.Get("state"), flow.state)

	if e := q.Get("error"); e != "" {
		details := []detail{{"error", e}}
		if d := q.Get("error_description"); d != "" {
			details = append(details, detail{"error_description", d})
		}
		if u := q.Get("error_uri"); u != "" {
			details = append(details, detail{"error_uri", u})
		}
		if !stateOK {
			details = append(details, detail{"state", "does not match a login started in this browser; this response may be stale or forged"})
		}
		a.log.Warn("provider returned an error to the callback", "error", truncate(e, 64), "state_ok", stateOK)
		a.renderError(w, http.StatusBadRequest, errorView{
			Heading: "The provider returned an error",
			Message: "The login did not complete. The provider said:",
			Details: details,
			Retry:   true,
		})
		return
	}

	switch {
	case cookieErr != nil:
		a.log.Warn("callback without login flow cookie")
		a.renderError(w, http.StatusBadRequest, errorView{
			Heading: "No login in progress",
			Message: "This browser has no pending login (the login cookie is missing or expired). Login flows are valid for 10 minutes.",
			Retry:   true,
		})
		return
	case !haveFlow:
		a.log.Warn("callback for unknown, expired or already used login flow")
		a.renderError(w, http.StatusBadRequest, errorView{
			Heading: "Login expired or already used",
			Message: "This login response was already processed or the login took longer than 10 minutes. Each login can be completed once.",
			Retry:   true,
		})
		return
	case !stateOK:
		a.log.Warn("callback state mismatch")
		a.renderError(w, http.StatusBadRequest, errorView{
			Heading: "State mismatch",
			Message: "The state returned by the provider does not match the login started in this browser. The response was refused.",
			Retry:   true,
		})
		return
	}

	code := q.Get("code")
	if code == "" {
		a.renderError(w, http.StatusBadRequest, errorView{
			Heading: "Missing authorization code",
			Message: "The provider redirected back without a code or an error.",
			Retry:   true,
		})
		return
	}

	prov, err := a.provider(r.Context())
	if err != nil {
		a.renderProviderDown(w, err, "")
		return
	}
	// RFC 9207 §2.4: a response from another issuer (mix-up attack) is
	// refused, and so is one without iss from a provider that sends it.
	if iss, ok := q["iss"]; ok && (len(iss) != 1 || iss[0] != prov.issuer) || !ok && prov.issParam {
		a.log.Warn("callback issuer mismatch", "iss", truncate(q.Get("iss"), 128))
		a.renderError(w, http.StatusBadRequest, errorView{
			Heading: "Issuer mismatch",
			Message: "The authorization response does not come from the provider this login was started with (RFC 9207). The response was refused.",
			Retry:   true,
		})
		return
	}
	ctx, cancel := a.backchannelContext(r.Context())
	defer cancel()
	tok, err := prov.oauth.Exchange(ctx, code, oauth2.VerifierOption(flow.verifier))
	if err != nil {
		a.renderTokenError(w, "Code exchange failed", err)
		return
	}
	idt, rawID, err := a.verifyIDToken(ctx, prov, tok, flow.nonce, nil)
	if err != nil {
		a.renderIDTokenRejected(w, err)
		return
	}
	claims, err := buildClaims(idt, rawID)
	if err != nil {
		a.renderIDTokenRejected(w, err)
		return
	}

	if old, err := r.Cookie(sessionCookie); err == nil {
		a.sessions.remove(old.Value)
	}
	sid := rand.Text()
	scope, _ := tok.Extra("scope").(string)
	if n := a.sessions.put(sid, session{
		rawIDToken:   rawID,
		accessToken:  tok.AccessToken,
		refreshToken: tok.RefreshToken,
		accessExpiry: tok.Expiry,
		grantedScope: scope,
		nonce:        flow.nonce,
		csrf:         rand.Text(),
		claims:       claims,
		loggedInAt:   a.now(),
	}); n > 0 {
		a.log.Warn("session store full, evicted oldest sessions", "evicted", n)
	}
	a.setCookie(w, sessionCookie, sid, sessionTTL)
	a.log.Info("login completed", "sub", claims.Subject, "amr", claims.AMR, "acr", claims.ACR, "refresh_token", tok.RefreshToken != "")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// verifyIDToken verifies the ID token in a token response. For a login,
// wantNonce is the nonce sent in the authorization request. For a refresh,
// prev is the session being refreshed: the new ID token must be for the same
// subject and, if it carries a nonce, the original one (OIDC Core 12.2).
func (a *app) verifyIDToken(ctx context.Context, prov *providerState, tok *oauth2.Token, wantNonce string, prev *session) (*oidc.IDToken, string, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, "", errors.New("the token response contains no id_token")
	}
	idt, err := prov.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, "", err
	}
	var extra struct {
		AZP string `json:"azp"`
	}
	if err := idt.Claims(&extra); err != nil {
		return nil, "", fmt.Errorf("reading claims: %w", err)
	}
	if extra.AZP != "" && extra.AZP != a.cfg.ClientID {
		return nil, "", fmt.Errorf("azp is %q, expected %q", extra.AZP, a.cfg.ClientID)
	}
	if len(idt.Audience) > 1 && extra.AZP == "" {
		return nil, "", errors.New("ID token has several audiences but no azp claim")
	}
	if prev == nil {
		if !equalSecret(idt.Nonce, wantNonce) {
			return nil, "", errors.New("nonce mismatch: the ID token's nonce is not the one sent in this login")
		}
	} else {
		if idt.Subject != prev.claims.Subject {
			return nil, "", errors.New("refreshed ID token is for a different subject")
		}
		if idt.Nonce != "" && !equalSecret(idt.Nonce, prev.nonce) {
			return nil, "", errors.New("nonce mismatch: refreshed ID token carries a nonce different from the original one")
		}
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, "", fmt.Errorf("at_hash does not match the access token: %w", err)
		}
	}
	return idt, raw, nil
}

// buildClaims extracts the claims shown on the home page.
func buildClaims(idt *oidc.IDToken, raw string) (claimsView, error) {
	var c struct {
		Name          string   `json:"name"`
		Email         string   `json:"email"`
		EmailVerified *bool    `json:"email_verified"`
		AMR           []string `json:"amr"`
		ACR           string   `json:"acr"`
		AuthTime      *float64 `json:"auth_time"`
	}
	if err := idt.Claims(&c); err != nil {
		return claimsView{}, fmt.Errorf("ID token claims have unexpected types: %w", err)
	}
	var payload json.RawMessage
	if err := idt.Claims(&payload); err != nil {
		return claimsView{}, err
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, payload, "", "  "); err != nil {
		return claimsView{}, err
	}

	v := claimsView{
		Subject:  idt.Subject,
		Name:     c.Name,
		Email:    c.Email,
		AMR:      c.AMR,
		ACR:      c.ACR,
		Issuer:   idt.Issuer,
		Audience: idt.Audience,
		Expiry:   idt.Expiry,
		IssuedAt: idt.IssuedAt,
		HasOTP:   slices.Contains(c.AMR, "otp"),
		HasMFA:   slices.Contains(c.AMR, "mfa"),
		RawJSON:  pretty.String(),
	}
	if c.EmailVerified != nil {
		v.EmailVerified = map[bool]string{true: "yes", false: "no"}[*c.EmailVerified]
	}
	if c.AuthTime != nil {
		v.AuthTime = time.Unix(int64(*c.AuthTime), 0)
	}
	// "mfa" says so explicitly (RFC 8176); "otp" together with another
	// method (e.g. "pwd") also means two factors were used.
	v.TwoFactor = v.HasMFA || (v.HasOTP && len(c.AMR) > 1)
	v.Alg, v.KeyID = jwtHeader(raw)
	return v, nil
}

// jwtHeader returns alg and kid from a compact JWS header (already verified).
func jwtHeader(raw string) (alg, kid string) {
	head, _, ok := strings.Cut(raw, ".")
	if !ok {
		return "", ""
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return "", ""
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(b, &h)
	return h.Alg, h.Kid
}

func (a *app) renderTokenError(w http.ResponseWriter, heading string, err error) {
	var rerr *oauth2.RetrieveError
	if errors.As(err, &rerr) {
		a.log.Warn(strings.ToLower(heading), "oauth_error", truncate(rerr.ErrorCode, 64))
		a.renderError(w, http.StatusBadRequest, errorView{
			Heading: heading,
			Message: "The provider's token endpoint refused the request.",
			Details: []detail{{"Error", errString(err)}},
			Retry:   true,
		})
		return
	}
	a.log.Warn(strings.ToLower(heading), "err", err)
	a.renderError(w, http.StatusBadGateway, errorView{
		Heading: heading,
		Message: "The provider's token endpoint could not be reached or sent an invalid response.",
		Details: []detail{{"Error", errString(err)}},
		Retry:   true,
	})
}

func (a *app) renderIDTokenRejected(w http.ResponseWriter, err error) {
	a.log.Warn("ID token rejected", "err", err)
	a.renderError(w, http.StatusUnauthorized, errorView{
		Heading: "ID token rejected",
		Message: "The provider issued tokens, but the ID token failed verification, so no session was created.",
		Details: []detail{{"Reason", err.Error()}},
		Retry:   true,
	})
}

// ---- POST /refresh ----

func (a *app) checkCSRF(w http.ResponseWriter, r *http.Request, s session) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if equalSecret(r.PostFormValue("csrf"), s.csrf) {
		return true
	}
	a.log.Warn("CSRF token mismatch", "path", r.URL.Path)
	a.renderError(w, http.StatusForbidden, errorView{
		Heading: "Request refused",
		Message: "The form token is missing or invalid. Go back to the home page and try again.",
	})
	return false
}

func (a *app) handleRefresh(w http.ResponseWriter, r *http.Request) {
	s, sid, ok := a.currentSession(r)
	if !ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if !a.checkCSRF(w, r, s) {
		return
	}
	if s.refreshToken == "" {
		a.renderError(w, http.StatusBadRequest, errorView{
			Heading: "No refresh token",
			Message: "The provider did not issue a refresh token for this session (was offline_access requested and granted?).",
		})
		return
	}
	prov, err := a.provider(r.Context())
	if err != nil {
		a.renderProviderDown(w, err, "")
		return
	}
	ctx, cancel := a.backchannelContext(r.Context())
	defer cancel()
	tok, err := prov.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: s.refreshToken}).Token()
	if err != nil {
		var rerr *oauth2.RetrieveError
		if errors.As(err, &rerr) && rerr.ErrorCode == "invalid_grant" {
			a.sessions.update(sid, func(s *session) { s.refreshToken = "" })
		}
		a.renderTokenError(w, "Refresh failed", err)
		return
	}

	var (
		newClaims *claimsView
		newRaw    string
	)
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		idt, rawID, err := a.verifyIDToken(ctx, prov, tok, "", &s)
		if err != nil {
			a.renderIDTokenRejected(w, err)
			return
		}
		c, err := buildClaims(idt, rawID)
		if err != nil {
			a.renderIDTokenRejected(w, err)
			return
		}
		newClaims, newRaw = &c, rawID
	}
	now := a.now()
	scope, _ := tok.Extra("scope").(string)
	ok = a.sessions.update(sid, func(s *session) {
		s.accessToken = tok.AccessToken
		s.accessExpiry = tok.Expiry
		s.refreshToken = tok.RefreshToken // oauth2 keeps the old one if not rotated
		if scope != "" {
			s.grantedScope = scope
		}
		s.refreshedAt = now
		if newClaims != nil {
			s.rawIDToken = newRaw
			s.claims = *newClaims
			s.claims.RefreshNote = "The provider returned a new ID token; it was verified and is shown below."
		} else {
			s.claims.RefreshNote = "The provider returned no new ID token; the claims below are from the previous one."
		}
	})
	if !ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	a.log.Info("tokens refreshed", "sub", s.claims.Subject, "new_id_token", newClaims != nil)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// ---- POST /logout ----

func (a *app) handleLogout(w http.ResponseWriter, r *http.Request) {
	s, sid, ok := a.currentSession(r)
	if !ok {
		a.clearCookie(w, sessionCookie)
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if !a.checkCSRF(w, r, s) {
		return
	}
	a.sessions.remove(sid)
	a.clearCookie(w, sessionCookie)
	a.log.Info("local session deleted", "sub", s.claims.Subject)

	prov, err := a.provider(r.Context())
	if err != nil {
		a.renderProviderDown(w, err, "Your local session was deleted, but the provider session could not be ended.")
		return
	}
	if prov.endSession == "" {
		a.log.Info("provider has no end_session_endpoint; logged out locally only")
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	u, err := url.Parse(prov.endSession)
	if err != nil {
		a.renderError(w, http.StatusBadGateway, errorView{
			Heading: "Invalid end_session_endpoint",
			Message: "Your local session was deleted, but the provider's end_session_endpoint is not a valid URL.",
			Details: []detail{{"end_session_endpoint", prov.endSession}},
		})
		return
	}
	state := rand.Text()
	params := u.Query()
	params.Set("id_token_hint", s.rawIDToken)
	params.Set("client_id", a.cfg.ClientID)
	params.Set("post_logout_redirect_uri", a.postLogoutURL)
	params.Set("state", state)
	u.RawQuery = params.Encode()
	a.setCookie(w, logoutCookie, state, flowTTL)
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// ---- GET /healthz ----

func (a *app) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
