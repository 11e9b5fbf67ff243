package main

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/style.css
var staticFS embed.FS

const (
	flowCookie    = "demo_rp_flow"
	sessionCookie = "demo_rp_session"
	logoutCookie  = "demo_rp_logout"

	flowTTL    = 10 * time.Minute
	sessionTTL = 8 * time.Hour
	maxEntries = 10000

	discoveryTimeout = 5 * time.Second
	exchangeTimeout  = 15 * time.Second
)

// app is the relying party: configuration, server-side state and the
// lazily discovered provider.
type app struct {
	cfg           config
	log           *slog.Logger
	httpClient    *http.Client
	redirectURL   string
	postLogoutURL string
	secureCookies bool
	now           func() time.Time

	flows    *ttlStore[loginFlow]
	sessions *ttlStore[session]
	pages    map[string]*template.Template

	discoveryTimeout time.Duration

	discMu   sync.Mutex
	prov     *providerState // nil until discovery succeeded
	inflight *discoveryCall
}

// providerState is everything derived from a successful discovery.
type providerState struct {
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	oauth      *oauth2.Config
	endSession string // may be empty
	// issuer and issParam: the discovered issuer and whether it sends iss
	// in authorization responses (RFC 9207), which the callback checks.
	issuer   string
	issParam bool
}

type discoveryCall struct {
	done chan struct{}
	prov *providerState
	err  error
}

// loginFlow is what /login remembers for /callback.
type loginFlow struct {
	state    string
	nonce    string
	verifier string
}

// session is a logged-in user. Tokens live only in memory and are never
// logged or rendered.
type session struct {
	rawIDToken   string
	accessToken  string
	refreshToken string
	accessExpiry time.Time
	grantedScope string
	nonce        string
	csrf         string
	claims       claimsView
	loggedInAt   time.Time
	refreshedAt  time.Time
}

// newApp validates cfg and builds the relying party. It does not contact
// the provider: discovery happens lazily on the first request needing it.
func newApp(cfg config, logger *slog.Logger) (*app, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = parseScopes(defaultScopes)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	a := &app{
		cfg:              cfg,
		log:              logger,
		httpClient:       &http.Client{Timeout: exchangeTimeout},
		redirectURL:      cfg.BaseURL + "/callback",
		postLogoutURL:    cfg.BaseURL + "/",
		secureCookies:    strings.HasPrefix(cfg.BaseURL, "https://"),
		now:              time.Now,
		pages:            pages,
		discoveryTimeout: discoveryTimeout,
	}
	a.flows = newTTLStore[loginFlow](flowTTL, maxEntries, func() time.Time { return a.now() })
	a.sessions = newTTLStore[session](sessionTTL, maxEntries, func() time.Time { return a.now() })
	return a, nil
}

// routes returns the HTTP handler of the relying party.
func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.handleHome)
	mux.HandleFunc("GET /login", a.handleLogin)
	mux.HandleFunc("GET /callback", a.handleCallback)
	mux.HandleFunc("POST /refresh", a.handleRefresh)
	mux.HandleFunc("POST /logout", a.handleLogout)
	mux.HandleFunc("GET /healthz", a.handleHealthz)
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/style.css", http.StripPrefix("/static/", http.FileServerFS(static)))
	return a.logRequests(securityHeaders(mux))
}

// provider returns the discovered provider, running discovery if it has not
// succeeded yet. Concurrent callers share one in-flight discovery; a failed
// discovery is not cached, so the next request tries again.
func (a *app) provider(ctx context.Context) (*providerState, error) {
	a.discMu.Lock()
	if a.prov != nil {
		p := a.prov
		a.discMu.Unlock()
		return p, nil
	}
	call := a.inflight
	if call == nil {
		call = &discoveryCall{done: make(chan struct{})}
		a.inflight = call
		go a.discover(context.WithoutCancel(ctx), call)
	}
	a.discMu.Unlock()

	select {
	case <-call.done:
		return call.prov, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *app) discover(ctx context.Context, call *discoveryCall) {
	ctx, cancel := context.WithTimeout(ctx, a.discoveryTimeout)
	defer cancel()
	call.prov, call.err = a.newProviderState(ctx)

	a.discMu.Lock()
	if call.err == nil {
		a.prov = call.prov
	}
	a.inflight = nil
	a.discMu.Unlock()
	close(call.done)

	if call.err != nil {
		a.log.Warn("provider discovery failed", "issuer", a.cfg.Issuer, "err", call.err)
	} else {
		a.log.Info("provider discovered", "issuer", a.cfg.Issuer, "end_session", call.prov.endSession != "")
	}
}

func (a *app) newProviderState(ctx context.Context) (*providerState, error) {
	// The client is remembered by the provider and reused for JWKS fetches.
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, a.httpClient), a.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var meta struct {
		Issuer                        string   `json:"issuer"`
		EndSessionEndpoint            string   `json:"end_session_endpoint"`
		CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
		IssParameterSupported         bool     `json:"authorization_response_iss_parameter_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, fmt.Errorf("reading discovery metadata: %w", err)
	}
	if len(meta.CodeChallengeMethodsSupported) > 0 && !slices.Contains(meta.CodeChallengeMethodsSupported, "S256") {
		a.log.Warn("provider does not advertise PKCE S256; using it anyway", "code_challenge_methods_supported", meta.CodeChallengeMethodsSupported)
	}
	ep := p.Endpoint()
	if a.cfg.ClientSecret != "" {
		ep.AuthStyle = oauth2.AuthStyleInHeader // client_secret_basic
	} else {
		ep.AuthStyle = oauth2.AuthStyleInParams // public client: client_id in the body
	}
	return &providerState{
		provider: p,
		verifier: p.Verifier(&oidc.Config{ClientID: a.cfg.ClientID}),
		oauth: &oauth2.Config{
			ClientID:     a.cfg.ClientID,
			ClientSecret: a.cfg.ClientSecret,
			Endpoint:     ep,
			RedirectURL:  a.redirectURL,
			Scopes:       a.cfg.Scopes,
		},
		endSession: meta.EndSessionEndpoint,
		issuer:     meta.Issuer,
		issParam:   meta.IssParameterSupported,
	}, nil
}

// backchannelContext bounds a call to the provider and makes oauth2 use our
// HTTP client.
func (a *app) backchannelContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, exchangeTimeout)
	return context.WithValue(ctx, oauth2.HTTPClient, a.httpClient), cancel
}

// ---- rendering ----

func parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"utc": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"join": strings.Join,
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, name := range []string{"home", "error"} {
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		pages[name] = t
	}
	return pages, nil
}

// pageData is passed to every template.
type pageData struct {
	Title    string
	Issuer   string
	ClientID string

	// home
	Session *claimsView
	CSRF    string
	Notice  string
	Warning string

	// error
	Error *errorView
}

type errorView struct {
	Heading string
	Message string
	Details []detail
	Retry   bool // offer "Try again" (back to /login)
}

type detail struct{ Name, Value string }

func (a *app) render(w http.ResponseWriter, status int, page string, data pageData) {
	data.Issuer = a.cfg.Issuer
	data.ClientID = a.cfg.ClientID
	var buf bytes.Buffer
	if err := a.pages[page].ExecuteTemplate(&buf, "layout.html", data); err != nil {
		a.log.Error("rendering template", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (a *app) renderError(w http.ResponseWriter, status int, ev errorView) {
	a.render(w, status, "error", pageData{Title: ev.Heading, Error: &ev})
}

// renderProviderDown is the friendly page shown when discovery fails.
func (a *app) renderProviderDown(w http.ResponseWriter, err error, extra string) {
	msg := "The OpenID provider could not be reached. Is it running? Discovery is retried on the next request."
	if extra != "" {
		msg = extra + " " + msg
	}
	a.renderError(w, http.StatusBadGateway, errorView{
		Heading: "Provider not reachable at " + a.cfg.Issuer,
		Message: msg,
		Details: []detail{{"Discovery URL", strings.TrimSuffix(a.cfg.Issuer, "/") + "/.well-known/openid-configuration"}, {"Error", errString(err)}},
		Retry:   true,
	})
}

func errString(err error) string {
	var rerr *oauth2.RetrieveError
	if errors.As(err, &rerr) {
		// Do not echo the raw response body; show the OAuth error fields.
		s := "token endpoint returned an error"
		if rerr.Response != nil {
			s = fmt.Sprintf("token endpoint returned HTTP %d", rerr.Response.StatusCode)
		}
		if rerr.ErrorCode != "" {
			s += ": " + rerr.ErrorCode
		}
		if rerr.ErrorDescription != "" {
			s += " (" + rerr.ErrorDescription + ")"
		}
		return s
	}
	return err.Error()
}

// ---- middleware ----

// securityHeaders sets the headers every response carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// logRequests logs method, path and status. It deliberately never logs the
// query string, which carries authorization codes and state.
func (a *app) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		a.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start).Round(time.Microsecond))
	})
}
