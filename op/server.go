package op

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/rs/cors"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	zop "github.com/zitadel/oidc/v3/pkg/op"

	"github.com/totp-idp/idp/op/account"
	"github.com/totp-idp/idp/op/audit"
	"github.com/totp-idp/idp/op/guard"
	"github.com/totp-idp/idp/op/httpx"
	"github.com/totp-idp/idp/op/login"
	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/op/metrics"
	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
)

// maxBodyBytes bounds every request body; login forms and token requests
// are far smaller.
const maxBodyBytes = 64 << 10

// Server is the OpenID provider with its login UI, ready to serve.
type Server struct {
	cfg     Config
	store   storage.Store
	log     *slog.Logger
	keys    *KeyManager
	hasher  *password.Hasher
	clients *clientCache
	pages   *pages.Pages
	login   *login.Handler
	metrics *metrics.Registry
	ipLimit *httpx.IPLimiter
	trail   *audit.Trail
	guard   *guard.Guard
	cookies httpx.Cookies
	handler http.Handler
}

// New wires a provider over store. It creates a signing key and the
// opaque-token key on first use of the database.
func New(ctx context.Context, cfg Config, store storage.Store) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("op: configuration refused:\n%w", err)
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HashConcurrency == 0 {
		cfg.HashConcurrency = runtime.NumCPU()
	}
	s := &Server{cfg: cfg, store: store, log: slog.New(httpx.LogHandler{Handler: cfg.Logger.Handler()}), metrics: metrics.New(), ipLimit: httpx.NewIPLimiter(cfg.LoginRatePerIP, cfg.LoginBurstPerIP)}
	s.trail = &audit.Trail{Store: store, Log: s.log, Now: s.cfg.now, Limit: audit.NewLimiter(), Metrics: s.metrics}
	if err := cfg.Sealer.Bind(ctx, store); err != nil {
		return nil, err
	}
	s.keys = NewKeyManager(store, cfg.Sealer, s.cfg.now, cfg.KeyRetention)
	if err := s.keys.EnsureKey(ctx); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	s.hasher = cfg.Hasher
	if s.hasher == nil {
		h, err := password.NewHasher(cfg.Argon2, cfg.HashConcurrency, cfg.HashQueueTimeout)
		if err != nil {
			return nil, err
		}
		s.hasher = h
	}
	// Warm before the first request: an unknown name must cost what a
	// known one costs from the first login on (docs/THREAT-MODEL.md rule 11).
	if err := s.hasher.Warm(); err != nil {
		return nil, err
	}
	s.registerMetrics()
	s.clients = newClientCache(store, s.cfg.now, cfg.Issuer)
	var err error
	if s.pages, err = pages.New(cfg.ProductName, s.log); err != nil {
		return nil, err
	}

	// The opaque-token key is shared by every process on the database:
	// any of them can read a token another issued.
	tokenKey, err := seal.OpenTokenKey(ctx, cfg.Sealer, store)
	if err != nil {
		return nil, err
	}
	s.cookies = httpx.Cookies{Secure: cfg.secureCookies()}
	var notify *mail.Notifier
	if cfg.Mail {
		notify = &mail.Notifier{Store: store, Sealer: cfg.Sealer, Text: s.pages.Text, Product: cfg.ProductName, Log: s.log, Now: s.cfg.now}
	}
	s.guard = guard.New(guard.Config{Store: store, Trail: s.trail, Metrics: s.metrics, Log: s.log, Now: s.cfg.now, Cookies: s.cookies,
		TokenKey: tokenKey, Password: cfg.PasswordPolicy, TOTP: cfg.TOTPPolicy, Notify: notify,
		DeviceMaxFailures: cfg.DeviceMaxFailures, DeviceLifetime: cfg.DeviceLifetime})
	s.login = login.New(login.Deps{Store: store, Sealer: cfg.Sealer, Hasher: s.hasher, Guard: s.guard, Trail: s.trail,
		Pages: s.pages, Metrics: s.metrics, Clients: s.clients, IPLimit: s.ipLimit, Cookies: s.cookies, Log: s.log, Now: s.cfg.now, Notify: notify,
		Settings: login.Settings{NewDeviceNotice: !cfg.NoNewDeviceNotice, Issuer: cfg.Issuer, ACR: cfg.ACR, Product: cfg.ProductName, AuthRequestLifetime: cfg.AuthRequestLifetime,
			SessionLifetime: cfg.SessionLifetime, SessionIdleTimeout: cfg.SessionIdleTimeout, EnrollWithin: cfg.EnrollWithin,
			Passwords: password.Policy{MinLength: cfg.PasswordMinLength}}})

	opCfg := &zop.Config{
		CryptoKey:                tokenKey,
		CryptoKeyId:              "k1",
		DefaultLogoutRedirectURI: login.LoggedOutPath,
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
		SupportedScopes:          supportedScopes,
		SupportedClaims:          supportedClaims,
	}
	opts := []zop.Option{
		zop.WithCrypto(zop.NewAES256GCMCrypto(tokenKey, "k1")),
		// CORS only for registered client origins, never with
		// credentials, never on the browser-facing endpoints.
		zop.WithCORSOptions(&cors.Options{
			AllowOriginVaryRequestFunc: s.corsAllowed,
			AllowedMethods:             []string{http.MethodGet, http.MethodPost},
			AllowedHeaders:             []string{"Authorization", "Content-Type"},
			AllowCredentials:           false,
		}),
	}
	if strings.HasPrefix(cfg.Issuer, "http://") {
		opts = append(opts, zop.WithAllowInsecure())
	}
	p, err := zop.NewProvider(opCfg, &oidcStorage{s: s}, zop.StaticIssuer(cfg.Issuer), opts...)
	if err != nil {
		return nil, fmt.Errorf("provider: %w", err)
	}
	prov := &provider{Provider: p}
	router := zop.CreateRouter(prov, s.protocolRoutes)
	discovery, err := s.discoveryDocument(ctx, prov)
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	// The discovery document and the health checks are ours for every
	// method, so that the library's own (which lists grants this provider
	// does not offer) is never reached.
	meta := func(h http.HandlerFunc) http.Handler { return s.metrics.Instrument("meta", getOnly(h)) }
	mux.Handle("/healthz", meta(healthz))
	mux.Handle("/readyz", meta(s.readyz))
	mux.Handle("/ready", meta(s.readyz))
	mux.Handle("/.well-known/openid-configuration", meta(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write(discovery)
	}))
	s.login.Mount(mux, func(h http.Handler) http.Handler { return s.metrics.Instrument("login", h) })
	account.New(account.Deps{Store: s.store, Login: s.login, Guard: s.guard, Hasher: s.hasher, Sealer: cfg.Sealer, Trail: s.trail,
		Pages: s.pages, Cookies: s.cookies, Log: s.log, Now: s.cfg.now, Issuer: cfg.Issuer, ReauthWindow: cfg.ReauthWindow,
		Passwords: password.Policy{MinLength: cfg.PasswordMinLength}, Product: cfg.ProductName, Notify: notify}).Mount(mux, func(h http.Handler) http.Handler {
		return s.metrics.Instrument("account", h)
	})
	mux.Handle("/", router)
	s.handler = s.outer(mux)
	return s, nil
}

// protocolRoutes gives each of the library's routes the defences of its
// class, in one table, so that no wrapper has to ask which path it is on:
//
//   - browser routes (/authorize, its callback, /end_session) answer a
//     person: errors become our error pages (htmlErrors), authorization
//     responses carry iss (RFC 9207), and each has its own guard (the
//     flow binding at /authorize and the callback, logout confirmation);
//   - API routes (token, revocation, introspection, userinfo) answer a
//     client: never cached (RFC 6749 §5.1), client authentication before
//     the library reaches the storage, RFC 6750 errors at userinfo;
//   - JWKS may be cached for JWKSMaxAge;
//   - any other path the library routes finds nothing (404).
//
// It is the library router's one interceptor: the library's own CORS
// handling stays outside it, and its routes are the exact paths below.
func (s *Server) protocolRoutes(next http.Handler) http.Handler {
	chain := func(wrap ...func(http.Handler) http.Handler) http.Handler {
		h := next
		for i := len(wrap) - 1; i >= 0; i-- {
			h = wrap[i](h)
		}
		return h
	}
	browser := func(guards ...func(http.Handler) http.Handler) http.Handler {
		return s.metrics.Instrument("browser", chain(append([]func(http.Handler) http.Handler{noStore, s.unavailable(true), s.htmlErrors}, guards...)...))
	}
	api := func(guards ...func(http.Handler) http.Handler) http.Handler {
		return s.metrics.Instrument("api", chain(append([]func(http.Handler) http.Handler{noStore, s.unavailable(false)}, guards...)...))
	}
	routes := map[string]http.Handler{
		authorizePath:       browser(s.limitAuthorize, s.authorizeBinding, s.authorizationResponseIssuer),
		login.CallbackPath:  browser(s.callbackBinding, s.authorizationResponseIssuer),
		endSessionPath:      s.metrics.Instrument("browser", chain(noStore, s.unavailable(true), s.htmlErrorsAs(pages.MsgBadLogout), s.endSession)),
		"/oauth/token":      api(s.tokenClient),
		"/revoke":           api(s.tokenClient),
		"/oauth/introspect": api(s.tokenClient),
		"/userinfo":         api(s.bearerErrors),
		"/keys":             s.metrics.Instrument("keys", chain(jwksCache)),
	}
	// Any other path the library routes (its device authorization
	// endpoint: this provider offers no device grant) finds nothing.
	other := s.metrics.Instrument("other", noStore(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404 page not found", http.StatusNotFound)
	})))
	for p := range browserRoutes {
		if routes[p] == nil {
			panic("protocolRoutes: browser route " + p + " without its wrappers")
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The table matches the decoded path, the library's router the
		// raw one: a percent-encoded spelling (RawPath set) of a route
		// would run that route's wrappers and then find no library
		// route. No route of ours needs an escape, so none gets one.
		if h, ok := routes[r.URL.Path]; ok && r.URL.RawPath == "" {
			h.ServeHTTP(w, r)
			return
		}
		other.ServeHTTP(w, r)
	})
}

// Handler is the provider's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Hasher exposes the password hasher (CLI and benchmarks share it).
func (s *Server) Hasher() *password.Hasher { return s.hasher }

// Keys exposes the signing key manager.
func (s *Server) Keys() *KeyManager { return s.keys }

// provider narrows the library's provider: the JWT-bearer grant, which
// the library always enables, is switched off (it is also refused by the
// storage, see GetKeyByIDAndClientID).
type provider struct{ *zop.Provider }

func (p *provider) GrantTypeJWTAuthorizationSupported() bool { return false }

// supportedClaims lists what our ID tokens and userinfo can contain.
var supportedClaims = []string{
	"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "acr", "azp",
	"at_hash", "c_hash", "name", "preferred_username", "email", "email_verified",
}

// discoveryDocument is served from memory. The library's document lists
// grants and response types we do not offer; ours tells the truth.
func (s *Server) discoveryDocument(ctx context.Context, p *provider) ([]byte, error) {
	ctx = zop.ContextWithIssuer(ctx, s.cfg.Issuer)
	d := zop.CreateDiscoveryConfig(ctx, p, p.Storage())
	d.ScopesSupported = supportedScopes
	d.ClaimsSupported = supportedClaims
	d.ResponseTypesSupported = []string{string(oidc.ResponseTypeCode)}
	d.GrantTypesSupported = []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
	d.CodeChallengeMethodsSupported = []oidc.CodeChallengeMethod{oidc.CodeChallengeMethodS256}
	d.DeviceAuthorizationEndpoint = ""
	d.CheckSessionIframe = ""
	d.RequestParameterSupported = false
	d.RequestObjectSigningAlgValuesSupported = nil
	d.ACRValuesSupported = []string{s.cfg.ACR}
	d.IDTokenSigningAlgValuesSupported = []string{"RS256"}
	// The library lists signing algorithms for JWT client authentication
	// at revocation and introspection although no endpoint offers it
	// (private_key_jwt needs GetKeyByIDAndClientID, which refuses): such a
	// list is only meaningful next to a JWT auth method (RFC 8414 §2).
	d.TokenEndpointAuthSigningAlgValuesSupported = nil
	d.RevocationEndpointAuthSigningAlgValuesSupported = nil
	d.IntrospectionEndpointAuthSigningAlgValuesSupported = nil
	// form_post is refused (authlimits.go): its page cannot carry iss.
	d.ResponseModesSupported = []string{string(oidc.ResponseModeQuery), string(oidc.ResponseModeFragment)}
	doc, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	// RFC 9207 §3; the library's type has no field for it.
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		return nil, err
	}
	m["authorization_response_iss_parameter_supported"] = true
	return json.Marshal(m)
}

// getOnly answers every method but GET and HEAD with 405 (RFC 9110
// §15.5.6).
func getOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h(w, r)
	}
}

// healthz is the liveness probe: the process serves requests. It reads
// nothing, so a database outage does not get every replica restarted.
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz is the readiness probe: the database answers within 2 s and its
// schema is the one this program was built for (storage.SchemaChecker),
// so a load balancer sends sign-ins only to replicas that can finish
// them. The reason goes to the log, not to the caller.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Cache-Control", "no-store")
	err := s.store.Ping(ctx)
	if sc, ok := s.store.(storage.SchemaChecker); ok && err == nil {
		err = sc.SchemaCurrent(ctx)
	}
	if err != nil {
		s.log.WarnContext(r.Context(), "readiness check failed", "err", err)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// noStore marks protocol answers uncacheable (RFC 6749 §5.1 for the token
// endpoint; the same for every other protocol answer but JWKS).
func noStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// jwksCache lets JWKS be cached for JWKSMaxAge (key rotation waits that
// long before a new key signs).
func jwksCache(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(JWKSMaxAge/time.Second)))
		next.ServeHTTP(w, r)
	})
}

// bearerErrors makes userinfo refuse tokens as RFC 6750 §3.1 asks: 401
// with a WWW-Authenticate challenge. The library answers 403 with "{}"
// when the storage refuses a token it could decrypt (expired, revoked), and
// 401 without a challenge when there is no token or it cannot be decrypted.
// A token in the URL query is refused before the library sees it: URLs end
// up in logs, histories and Referer headers (RFC 6750 §2.3, §5.3; OAuth
// 2.1 removes the method).
func (s *Server) bearerErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("access_token") {
			const desc = "send the access token in the Authorization header, not in the URL"
			h := w.Header()
			h.Set("Content-Type", "application/json")
			h.Set("WWW-Authenticate", `Bearer error="invalid_request", error_description="`+desc+`"`)
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_request","error_description":"` + desc + `"}`))
			return
		}
		next.ServeHTTP(&bearerErrorWriter{ResponseWriter: w, sent: r.Header.Get("Authorization") != ""}, r)
	})
}

// bearerErrorWriter rewrites a 401 or 403 into 401 with a challenge and an
// RFC 6750 error body, and drops the library's body.
type bearerErrorWriter struct {
	http.ResponseWriter
	sent     bool // a token came in the Authorization header
	replaced bool
}

func (w *bearerErrorWriter) WriteHeader(code int) {
	if w.replaced || (code != http.StatusUnauthorized && code != http.StatusForbidden) {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.replaced = true
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	body := `{"error":"invalid_token"}`
	if code == http.StatusForbidden || w.sent {
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	} else {
		h.Set("WWW-Authenticate", "Bearer")
		body = `{"error":"invalid_request"}`
	}
	w.ResponseWriter.WriteHeader(http.StatusUnauthorized)
	_, _ = w.ResponseWriter.Write([]byte(body))
}

func (w *bearerErrorWriter) Write(b []byte) (int, error) {
	if w.replaced {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// limitAuthorize applies the optional per-address limit to /authorize as
// well: every authorization request stores a row, so a flood of them is
// load too. It shares the bucket with the login form posts.
func (s *Server) limitAuthorize(next http.Handler) http.Handler {
	if s.ipLimit == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := s.ipLimit.Allow(httpx.RequestFrom(r.Context()).IP, s.cfg.now()); !ok {
			s.metrics.IPLimited()
			s.pages.Limited(w, wait, s.cfg.now())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorizeBinding lets CreateAuthRequest bind the new auth request to the
// browser that called /authorize: it sets that request's flow cookie on the
// /authorize answer, before the redirect to the login page. A login page
// opened in any other browser is refused, so a genuine login link sent to a
// victim is useless (docs/THREAT-MODEL.md rule 7).
func (s *Server) authorizeBinding(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		infoFrom(r.Context()).bindFlow = func(id, secret string) {
			s.login.BindFlow(w, id, secret)
		}
		next.ServeHTTP(w, r)
	})
}

// callbackBinding lets the library's callback issue a code only to the
// browser that called /authorize and signed in (docs/THREAT-MODEL.md
// rule 7). The library reads the request id from r.Form, where a
// body value wins over the query, so the request must have exactly one
// shape: GET, no body, exactly one id in the query. The checked id is put
// in the request context and SaveAuthCode refuses a code for any other.
func (s *Server) callbackBinding(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			s.pages.Error(w, http.StatusMethodNotAllowed, pages.MsgBadRequest, "")
			return
		}
		q, err := url.ParseQuery(r.URL.RawQuery)
		ids := q["id"]
		if err != nil || len(ids) != 1 || ids[0] == "" || r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
			s.pages.Error(w, http.StatusBadRequest, pages.MsgBadRequest, "")
			return
		}
		id := ids[0]
		a, err := s.store.AuthRequestByID(r.Context(), id, s.cfg.now())
		if err != nil {
			s.pages.Fail(w, r, s.login.LinkError(r, id, err))
			return
		}
		if !s.login.BoundToBrowser(r, &a) {
			s.trail.Event(r.Context(), "binding_mismatch", a.UserID, "", a.ClientID, "callback")
			s.pages.Error(w, http.StatusForbidden, pages.MsgOtherBrowser, "")
			return
		}
		if a.Done() && len(a.SessionHash) == 0 {
			// The login step that completed the request has not yet
			// opened its SSO session and renewed the flow cookie: a code
			// now would come from the old cookie and belong to no session
			// (so no logout could reach its tokens). The login page
			// finishes that step.
			http.Redirect(w, r, login.URL(a.ID), http.StatusSeeOther)
			return
		}
		if a.Done() {
			// A disabled account, or one that must choose a new password,
			// gets no code (SaveAuthCode refuses it too): the page saying
			// so, or the login page's form.
			if err := s.login.AccountGate(r, &a); errors.Is(err, login.ErrMustChange) {
				http.Redirect(w, r, login.URL(a.ID), http.StatusSeeOther)
				return
			} else if err != nil {
				s.pages.Fail(w, r, err)
				return
			}
		}
		infoFrom(r.Context()).callbackID = id
		next.ServeHTTP(w, r)
	})
}

// endSession guards RP-initiated logout (RP-Initiated Logout 1.0 §2). A
// request whose form cannot be parsed is refused here (the library answers
// it with a 500). TerminateSessionFromRequest ends the browser's session
// only when the id_token_hint names that very session or the user confirmed
// on our page; otherwise the library's redirect is held back and the
// confirmation page shown, whose form is protected like the login forms
// (cross-origin protection and a token bound to the SSO cookie), so a bare
// top-level navigation signs nobody out (logout CSRF). The SSO cookie is
// cleared only when a logout went through.
func (s *Server) endSession(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			s.pages.Error(w, http.StatusBadRequest, pages.MsgBadLogout, "")
			return
		}
		ri := infoFrom(r.Context())
		ri.postLogoutURI = r.Form.Get("post_logout_redirect_uri")
		if r.Method == http.MethodPost && r.PostForm.Get("confirm") != "" {
			if cop.Check(r) != nil || ri.ssoCookie == "" ||
				subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(logoutToken(ri.ssoCookie))) != 1 {
				s.trail.Event(r.Context(), "csrf_rejected", "", "", "", "logout confirmation")
				s.pages.Error(w, http.StatusForbidden, pages.MsgForgery, "")
				return
			}
			ri.logoutConfirmed = true
		}
		lw := &logoutWriter{ResponseWriter: w, ri: ri, clear: func() { s.login.ClearSSO(w) }}
		next.ServeHTTP(lw, r)
		if lw.held {
			s.renderLogoutConfirm(w, r, ri.ssoCookie)
		}
	})
}

// logoutToken is the confirmation form's token: the login forms' token
// (login.CSRFToken) keyed by the SSO cookie, so only a page served to this
// browser can carry it.
func logoutToken(ssoCookie string) string { return login.CSRFToken(ssoCookie, "logout") }

// logoutFields are the end_session parameters the confirmation form
// carries back (RP-Initiated Logout 1.0 §2).
var logoutFields = []string{"id_token_hint", "client_id", "post_logout_redirect_uri", "state", "logout_hint", "ui_locales"}

func (s *Server) renderLogoutConfirm(w http.ResponseWriter, r *http.Request, ssoCookie string) {
	d := pages.Data{Title: "title.logout", CSRF: logoutToken(ssoCookie)}
	for _, k := range logoutFields {
		if v := r.Form.Get(k); v != "" {
			d.Fields = append(d.Fields, pages.Field{Name: k, Value: v})
		}
	}
	if id := r.Form.Get("client_id"); id != "" {
		d.ClientName = s.clients.Name(r.Context(), id)
	}
	s.pages.Render(w, http.StatusOK, "logout", d)
}

// logoutWriter clears the SSO cookie before a logout's redirect, or holds
// the whole answer back when the logout awaits confirmation.
type logoutWriter struct {
	http.ResponseWriter
	ri    *reqInfo
	clear func()
	held  bool
	done  bool
}

func (w *logoutWriter) WriteHeader(code int) {
	if w.done || w.held {
		return
	}
	if w.ri.logoutPending && code >= 300 && code < 400 {
		w.held = true
		w.ResponseWriter.Header().Del("Location")
		return
	}
	w.done = true
	if code >= 300 && code < 400 {
		w.clear()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *logoutWriter) Write(b []byte) (int, error) {
	if w.held {
		return len(b), nil
	}
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *logoutWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// tokenClient authenticates the client on the token and revocation
// endpoints before the library reaches the storage: the library looks a
// code up before it checks the client, and a lookup must not consume a
// code or revoke a family for a caller that is not its client. It reads the
// same credentials the library does (HTTP Basic with form-encoded parts,
// RFC 6749 §2.3.1, or client_id and client_secret in the body) and decides
// nothing itself: the library still answers the authentication failure.
func (s *Server) tokenClient(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			// RFC 6749 §3.2, RFC 7009 §2.1, RFC 7662 §2.1: POST only, so
			// that codes and tokens never travel in a URL (the library
			// would also take them from a GET query).
			w.Header().Set("Allow", http.MethodPost)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = w.Write([]byte(`{"error":"invalid_request","error_description":"use POST"}`))
			return
		}
		if err := r.ParseForm(); err == nil {
			ri := infoFrom(r.Context())
			ri.codeVerifier = r.PostForm.Get("code_verifier")
			ri.tokenClient = s.authenticatedClient(r)
		}
		next.ServeHTTP(w, r)
	})
}

// authenticatedClient returns the id of the client whose credentials r
// carries, or "" when they are missing or wrong. A public client
// authenticates with its id alone (and PKCE, checked with the code).
func (s *Server) authenticatedClient(r *http.Request) string {
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return ""
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == "" {
		return ""
	}
	c, err := s.clients.get(r.Context(), id)
	if err != nil {
		return ""
	}
	if c.Public {
		if secret != "" {
			return ""
		}
		return c.ID
	}
	if !secretMatches(c, secret) {
		return ""
	}
	return c.ID
}

// The library's browser routes (protocolRoutes); CORS never applies to
// them.
const (
	authorizePath  = "/authorize"
	endSessionPath = "/end_session"
)

var browserRoutes = map[string]bool{authorizePath: true, login.CallbackPath: true, endSessionPath: true}

// corsAllowed admits registered client origins on the API endpoints only.
func (s *Server) corsAllowed(r *http.Request, origin string) (bool, []string) {
	if browserRoutes[r.URL.Path] {
		return false, nil
	}
	return s.clients.originAllowed(r.Context(), origin), nil
}

// clientCache keeps clients and their origins in memory for a few seconds;
// `idp client add|delete` in another process shows up within that time.
type clientCache struct {
	store  storage.Store
	now    func() time.Time
	issuer string

	mu      sync.Mutex
	byID    map[string]cachedClient
	origins map[string]bool
	loaded  time.Time
}

type cachedClient struct {
	c      storage.Client
	err    error
	expiry time.Time
}

const clientCacheTTL = 5 * time.Second

func newClientCache(store storage.Store, now func() time.Time, issuer string) *clientCache {
	return &clientCache{store: store, now: now, issuer: issuer, byID: map[string]cachedClient{}}
}

func (c *clientCache) get(ctx context.Context, id string) (storage.Client, error) {
	if id == account.ClientID {
		// The account page's own client: built in, never in the store.
		return account.Client(c.issuer), nil
	}
	now := c.now()
	c.mu.Lock()
	e, ok := c.byID[id]
	c.mu.Unlock()
	if ok && now.Before(e.expiry) {
		return e.c, e.err
	}
	cl, err := c.store.ClientByID(ctx, id)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return cl, err
	}
	c.mu.Lock()
	if len(c.byID) > 10000 {
		c.byID = map[string]cachedClient{}
	}
	c.byID[id] = cachedClient{c: cl, err: err, expiry: now.Add(clientCacheTTL)}
	c.mu.Unlock()
	return cl, err
}

// invalidate forgets every cached client (a change reported by
// storage.ChangeListener): the next use reads the store.
func (c *clientCache) invalidate() {
	c.mu.Lock()
	c.byID, c.origins = map[string]cachedClient{}, nil
	c.mu.Unlock()
}

// Name is the client's display name: its name, or its id when it has
// none; "" for an unknown client (login.ClientNames).
func (c *clientCache) Name(ctx context.Context, id string) string {
	cl, err := c.get(ctx, id)
	if err != nil {
		return ""
	}
	if cl.Name != "" {
		return cl.Name
	}
	return cl.ID
}

func (c *clientCache) originAllowed(ctx context.Context, origin string) bool {
	now := c.now()
	c.mu.Lock()
	stale := c.origins == nil || now.Sub(c.loaded) > clientCacheTTL
	c.mu.Unlock()
	if stale {
		list, err := c.store.ListClients(ctx)
		if err != nil {
			return false
		}
		m := map[string]bool{}
		for _, cl := range list {
			for _, u := range cl.RedirectURIs {
				if o := originOf(u); o != "" {
					m[o] = true
				}
			}
		}
		c.mu.Lock()
		c.origins, c.loaded = m, now
		c.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.origins[origin]
}

func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
