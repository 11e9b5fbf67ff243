// Package account is the account page at /account: a signed-in user sees
// their profile, sign-in methods, where they are signed in and their
// recent security events.
//
// The provider is its own client there (ClientID): a browser without a
// usable SSO session is sent through /authorize like any application's,
// so it meets the same password and second-factor steps and the same
// guard (docs/THREAT-MODEL.md rule 7); an existing SSO session is reused
// without a new login. The code that comes back is checked here (state,
// PKCE, the browser's own session) and consumed; no token is issued.
package account

import (
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/totp-idp/idp/op/audit"
	"github.com/totp-idp/idp/op/guard"
	"github.com/totp-idp/idp/op/httpx"
	"github.com/totp-idp/idp/op/login"
	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/op/secret"
	"github.com/totp-idp/idp/storage"
)

const (
	// ClientID is the provider's own public client; no operator client
	// may take it (admin.AddClient refuses it).
	ClientID = "idp-account"
	// Path is the account page; CallbackPath its sign-in's redirect URI.
	Path         = "/account"
	CallbackPath = "/account/callback"
	// flowLifetime bounds a sign-in to the account page (its state and
	// PKCE verifier cookie), as long as a sign-in's own flow.
	flowLifetime = 10 * time.Minute
	// eventWindow and maxEvents bound the recent events shown.
	eventWindow = 30 * 24 * time.Hour
	maxEvents   = 20
)

// Client is the account page's client for issuer: public, PKCE required,
// one exact redirect URI.
func Client(issuer string) storage.Client {
	return storage.Client{ID: ClientID, Name: "your account", Public: true, PKCERequired: true,
		RedirectURIs: []string{strings.TrimSuffix(issuer, "/") + CallbackPath}}
}

// DefaultReauthWindow is how long a proof of the second factor lets the
// account page's actions run before it is asked again.
const DefaultReauthWindow = 5 * time.Minute

// Deps are the account page's dependencies.
type Deps struct {
	Store   storage.Store
	Login   *login.Handler
	Guard   *guard.Guard
	Hasher  *password.Hasher
	Sealer  *seal.Sealer
	Trail   *audit.Trail
	Pages   *pages.Pages
	Cookies httpx.Cookies
	Log     *slog.Logger
	Now     func() time.Time
	Issuer  string
	// ReauthWindow: DefaultReauthWindow when zero.
	ReauthWindow time.Duration
	Passwords    password.Policy
	// Product names the provider in authenticator apps.
	Product string
	// Notify queues the security notifications (nil: mail off).
	Notify *mail.Notifier
}

// Handler serves the account page.
type Handler struct {
	store     storage.Store
	login     *login.Handler
	guard     *guard.Guard
	hasher    *password.Hasher
	sealer    *seal.Sealer
	trail     *audit.Trail
	pages     *pages.Pages
	cookies   httpx.Cookies
	log       *slog.Logger
	now       func() time.Time
	issuer    string
	reauth    time.Duration
	passwords password.Policy
	product   string
	notify    *mail.Notifier
}

// New builds the account page over d.
func New(d Deps) *Handler {
	if d.ReauthWindow <= 0 {
		d.ReauthWindow = DefaultReauthWindow
	}
	return &Handler{store: d.Store, login: d.Login, guard: d.Guard, hasher: d.Hasher, sealer: d.Sealer, trail: d.Trail, pages: d.Pages,
		cookies: d.Cookies, log: d.Log, now: d.Now, issuer: strings.TrimSuffix(d.Issuer, "/"), reauth: d.ReauthWindow,
		passwords: d.Passwords, product: d.Product, notify: d.Notify}
}

// Mount adds the account routes to mux, each wrapped by wrap.
func (h *Handler) Mount(mux *http.ServeMux, wrap func(http.Handler) http.Handler) {
	inner := http.NewServeMux()
	inner.HandleFunc("GET "+Path, h.pages.Handle(h.overview))
	inner.HandleFunc("GET "+CallbackPath, h.pages.Handle(h.callback))
	inner.HandleFunc("POST "+VerifyPath, h.pages.Handle(h.verify))
	inner.HandleFunc("POST "+PasswordPath, h.pages.Handle(h.changePassword))
	inner.HandleFunc("POST "+EndPath, h.pages.Handle(h.endSessions))
	inner.HandleFunc("POST "+CodesPath, h.pages.Handle(h.renewCodes))
	inner.HandleFunc("POST "+AuthenticatorPath, h.pages.Handle(h.newAuthenticator))
	inner.HandleFunc("POST "+ConfirmPath, h.pages.Handle(h.confirmAuthenticator))
	inner.HandleFunc("POST "+EmailPath, h.pages.Handle(h.changeEmail))
	inner.HandleFunc("POST "+EmailLinkPath, h.pages.Handle(h.emailLink))
	inner.HandleFunc("GET "+VerifyEmailPath, h.pages.Handle(h.verifyEmailPage))
	inner.HandleFunc("POST "+VerifyEmailPath, h.pages.Handle(h.verifyEmail))
	inner.HandleFunc(Path+"/", func(w http.ResponseWriter, r *http.Request) {
		h.pages.Error(w, http.StatusNotFound, pages.MsgNotFound, "")
	})
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.pages.Error(w, http.StatusForbidden, pages.MsgForgery, "")
	}))
	handler := wrap(cop.Handler(inner))
	mux.Handle(Path, handler)
	mux.Handle(Path+"/", handler)
}

func (h *Handler) flowCookieName() string { return h.cookies.Name("idp_account_flow") }

// signIn sends the browser through the provider's own authorization
// request (code flow, S256 PKCE, a fresh state), keeping state and
// verifier in a cookie of this browser.
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request) error {
	state, verifier := secret.New(16), secret.New(32)
	h.cookies.Set(w, h.flowCookieName(), state+"."+verifier, flowLifetime)
	q := url.Values{
		"client_id": {ClientID}, "redirect_uri": {h.issuer + CallbackPath}, "response_type": {"code"},
		"scope": {"openid"}, "state": {state}, "code_challenge": {secret.S256Challenge(verifier)},
		"code_challenge_method": {"S256"},
	}
	return &pages.SeeOther{URL: "/authorize?" + q.Encode()}
}

// callback finishes the account page's sign-in: the state is this
// browser's, the code is the account client's and matches the PKCE
// verifier, it is consumed once, and the request's SSO session is the one
// this browser holds. Then the account page shows.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q := r.URL.Query()
	c, err := r.Cookie(h.flowCookieName())
	h.cookies.Clear(w, h.flowCookieName())
	state, verifier, okCookie := "", "", err == nil
	if okCookie {
		state, verifier, okCookie = strings.Cut(c.Value, ".")
	}
	if !okCookie || subtle.ConstantTimeCompare([]byte(state), []byte(q.Get("state"))) != 1 || state == "" {
		return &pages.Error{Status: http.StatusBadRequest, Msg: "account.link_invalid", What: "account callback: state"}
	}
	if q.Get("error") != "" {
		// Refused at sign-in (a lock, a disabled account): the login
		// pages said why; start again from here.
		return &pages.Error{Status: http.StatusForbidden, Msg: "account.signin_failed", What: "account callback: " + q.Get("error"),
			Back: Path}
	}
	code := q.Get("code")
	a, err := h.store.AuthRequestByCodeHash(ctx, secret.Hash(code))
	if errors.Is(err, storage.ErrNotFound) || err == nil && (a.ClientID != ClientID || !secret.S256Matches(verifier, a.CodeChallenge)) {
		return &pages.Error{Status: http.StatusBadRequest, Msg: "account.link_invalid", What: "account callback: code"}
	}
	if err != nil {
		return pages.Internal("account callback: code", err)
	}
	if _, err := h.store.ConsumeAuthCode(ctx, secret.Hash(code), h.now()); err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrReused) {
			return &pages.Error{Status: http.StatusBadRequest, Msg: "account.link_invalid", What: "account callback: consume"}
		}
		return pages.Internal("account callback: consume", err)
	}
	if cookie := h.login.SSOCookie(r); cookie == "" || len(a.SessionHash) == 0 ||
		subtle.ConstantTimeCompare(secret.Hash(cookie), a.SessionHash) != 1 {
		return &pages.Error{Status: http.StatusBadRequest, Msg: "account.link_invalid", What: "account callback: session"}
	}
	return &pages.SeeOther{URL: Path}
}

// overview shows the account page to a browser with a usable SSO session,
// and sends any other through the sign-in.
func (h *Handler) overview(w http.ResponseWriter, r *http.Request) error {
	sess, ok := h.login.CurrentSession(r)
	if !ok {
		return h.signIn(w, r)
	}
	v, err := h.view(r, sess)
	if err != nil {
		return err
	}
	h.pages.Render(w, http.StatusOK, "account", pages.Data{Title: "title.account", Wide: true, Account: v})
	return nil
}
