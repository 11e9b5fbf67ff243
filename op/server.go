package op

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
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

	"github.com/totp-idp/idp/storage"
)

// Paths of the login UI. Everything under /login/ is ours; the rest is the
// protocol library's router.
const (
	loginPath        = "/login/"
	loginPasswordURL = "/login/password"
	loginTOTPURL     = "/login/totp"
	loggedOutURL     = "/login/logged-out"
	callbackPath     = "/authorize/callback"
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
	hasher  *Hasher
	clients *clientCache
	pages   *pages
	metrics *metrics
	ipLimit *ipLimiter
	// unknownSecret keys the counters of usernames without an account.
	unknownSecret []byte
	handler       http.Handler
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
	s := &Server{cfg: cfg, store: store, log: cfg.Logger, metrics: newMetrics(), ipLimit: newIPLimiter(cfg.LoginRatePerIP, cfg.LoginBurstPerIP)}
	if err := cfg.Sealer.Bind(ctx, store); err != nil {
		return nil, err
	}
	s.keys = NewKeyManager(store, cfg.Sealer, s.cfg.now, cfg.KeyRetention)
	if err := s.keys.EnsureKey(ctx); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	h, err := NewHasher(cfg.Argon2, cfg.HashConcurrency, cfg.HashQueueTimeout)
	if err != nil {
		return nil, err
	}
	if err := h.Warm(); err != nil {
		return nil, err
	}
	s.hasher = h
	s.clients = newClientCache(store, s.cfg.now)
	if s.pages, err = newPages(cfg.ProductName); err != nil {
		return nil, err
	}

	tokenKey, err := s.openSettings(ctx)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, tokenKey[:])
	mac.Write([]byte("unknown-username-key"))
	s.unknownSecret = mac.Sum(nil)

	opCfg := &zop.Config{
		CryptoKey:                tokenKey,
		CryptoKeyId:              "k1",
		DefaultLogoutRedirectURI: loggedOutURL,
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
	router := zop.CreateRouter(prov, s.protocolHeaders, s.limitAuthorize, s.authorizeBinding, s.bearerErrors, s.htmlErrors, s.callbackBinding, s.endSessionCookie)
	discovery, err := s.discoveryDocument(ctx, prov)
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write(discovery)
	})
	mux.Handle(loginPath, s.loginHandler())
	mux.Handle("/", router)
	s.handler = s.outer(mux)
	return s, nil
}

// openSettings returns the opaque-token key, shared by every process on the
// database (any of them can read a token another issued) and sealed like
// every secret; the first process creates it.
func (s *Server) openSettings(ctx context.Context) ([32]byte, error) {
	var key [32]byte
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return key, err
	}
	name := storage.SealedSettingPrefix + "oidc_token_key"
	sealed, err := s.cfg.Sealer.Seal(ctx, aadSetting(name), fresh)
	if err != nil {
		return key, err
	}
	stored, err := s.store.PutSettingIfAbsent(ctx, name, sealed)
	if err != nil {
		return key, fmt.Errorf("token key: %w", err)
	}
	plain, err := s.cfg.Sealer.Open(aadSetting(name), stored)
	if err != nil || len(plain) != 32 {
		return key, fmt.Errorf("token key: %w", errors.Join(ErrSecretKey, err))
	}
	copy(key[:], plain)
	return key, nil
}

// unknownKey is the counter key of a username without an account: a keyed
// hash, so the table holds no submitted names and is the same in every
// process on the database.
func (s *Server) unknownKey(username string) string {
	mac := hmac.New(sha256.New, s.unknownSecret)
	mac.Write([]byte(username))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])
}

// Handler is the provider's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Hasher exposes the password hasher (CLI and benchmarks share it).
func (s *Server) Hasher() *Hasher { return s.hasher }

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
	return json.Marshal(d)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Cache-Control", "no-store")
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("health check failed", "err", err)
		http.Error(w, "database unavailable", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// protocolHeaders marks protocol answers uncacheable (RFC 6749 §5.1 for the
// token endpoint; the same for userinfo, introspection and revocation) and
// lets JWKS be cached briefly.
func (s *Server) protocolHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keys" {
			w.Header().Set("Cache-Control", "public, max-age=300")
		} else {
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Pragma", "no-cache")
		}
		next.ServeHTTP(w, r)
	})
}

// bearerErrors makes userinfo refuse tokens as RFC 6750 §3.1 asks: 401
// with a WWW-Authenticate challenge. The library answers 403 with "{}"
// when the storage refuses a token it could decrypt (expired, revoked), and
// 401 without a challenge when there is no token or it cannot be decrypted.
func (s *Server) bearerErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/userinfo" {
			next.ServeHTTP(w, r)
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
		if r.URL.Path == "/authorize" {
			if ok, wait := s.ipLimit.allow(infoFrom(r.Context()).ip, s.cfg.now()); !ok {
				s.metrics.inc("idp_login_ip_limited_total", "")
				s.pages.limited(w, wait, s.cfg.now())
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// authorizeBinding lets CreateAuthRequest bind the new auth request to the
// browser that called /authorize: it sets that request's flow cookie on the
// /authorize answer, before the redirect to the login page. A login page
// opened in any other browser is refused, so a genuine login link sent to a
// victim is useless (README, security model rule 7).
func (s *Server) authorizeBinding(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/authorize" {
			infoFrom(r.Context()).bindFlow = func(id, secret string) {
				s.setCookie(w, s.flowCookieName(id), secret, s.cfg.AuthRequestLifetime)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// callbackBinding lets the library's callback issue a code only to the
// browser that called /authorize and signed in (README, security
// model rule 7). The library reads the request id from r.Form, where a
// body value wins over the query, so the request must have exactly one
// shape: GET, no body, exactly one id in the query. The checked id is put
// in the request context and SaveAuthCode refuses a code for any other.
func (s *Server) callbackBinding(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != callbackPath {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			s.pages.errorPage(w, r, http.StatusMethodNotAllowed, msgBadRequest, "")
			return
		}
		q, err := url.ParseQuery(r.URL.RawQuery)
		ids := q["id"]
		if err != nil || len(ids) != 1 || ids[0] == "" || r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
			s.pages.errorPage(w, r, http.StatusBadRequest, msgBadRequest, "")
			return
		}
		id := ids[0]
		a, err := s.store.AuthRequestByID(r.Context(), id, s.cfg.now())
		if err != nil {
			s.linkProblem(w, r, id)
			return
		}
		if !s.boundToBrowser(r, &a) {
			s.audit(r.Context(), "binding_mismatch", a.UserID, "", a.ClientID, "callback")
			s.pages.errorPage(w, r, http.StatusForbidden, msgOtherBrowser, "")
			return
		}
		infoFrom(r.Context()).callbackID = id
		next.ServeHTTP(w, r)
	})
}

// endSessionCookie clears the SSO cookie on a successful logout. A request whose form
// cannot be parsed is refused here: the library answers it with a 500.
func (s *Server) endSessionCookie(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/end_session" {
			if err := r.ParseForm(); err != nil {
				s.pages.errorPage(w, r, http.StatusBadRequest, msgBadLogout, "")
				return
			}
			// Clear the SSO cookie only when the logout went through (the
			// library then redirects); a refused logout keeps the session.
			next.ServeHTTP(&onRedirect{ResponseWriter: w, before: func() { s.clearCookie(w, s.ssoCookieName()) }}, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// onRedirect runs before() just before a 3xx status is written.
type onRedirect struct {
	http.ResponseWriter
	before func()
	done   bool
}

func (w *onRedirect) WriteHeader(code int) {
	if code >= 300 && code < 400 && !w.done {
		w.done = true
		w.before()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *onRedirect) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// corsAllowed admits registered client origins on the API endpoints only.
func (s *Server) corsAllowed(r *http.Request, origin string) (bool, []string) {
	switch r.URL.Path {
	case "/authorize", callbackPath, "/end_session":
		return false, nil
	}
	return s.clients.originAllowed(r.Context(), origin), nil
}

// clientCache keeps clients and their origins in memory for a few seconds;
// `idp client add|delete` in another process shows up within that time.
type clientCache struct {
	store storage.Store
	now   func() time.Time

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

func newClientCache(store storage.Store, now func() time.Time) *clientCache {
	return &clientCache{store: store, now: now, byID: map[string]cachedClient{}}
}

func (c *clientCache) get(ctx context.Context, id string) (storage.Client, error) {
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
