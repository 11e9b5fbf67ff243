package login

import (
	"context"
	"log/slog"
	"time"

	"github.com/totp-idp/idp/op/audit"
	"github.com/totp-idp/idp/op/guard"
	"github.com/totp-idp/idp/op/httpx"
	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/op/metrics"
	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
)

// Paths of the login UI. Everything under Path is this package's; the
// callback is the protocol library's route that issues the code once a
// request is done (op guards it).
const (
	Path          = "/login/"
	PasswordPath  = "/login/password"
	TOTPPath      = "/login/totp"
	LoggedOutPath = "/login/logged-out"
	// NewPasswordPath takes the password a user must choose after both
	// factors when an operator asked for it (set-password --must-change).
	NewPasswordPath = "/login/new-password"
	CallbackPath    = "/authorize/callback"
)

// ClientNames gives an application's display name (its id when it has
// none; "" for an unknown client).
type ClientNames interface {
	Name(ctx context.Context, clientID string) string
}

// Settings are the login's durations and names.
type Settings struct {
	// Issuer is the provider's issuer URL, without a trailing slash.
	Issuer string
	// ACR is the acr of every completed login; Product names the provider
	// in authenticator apps.
	ACR, Product string
	// AuthRequestLifetime is a flow cookie's life; SessionLifetime and
	// SessionIdleTimeout bound the SSO session; EnrollWithin is how long
	// a password alone may lead to enrollment (enrollwindow.go).
	AuthRequestLifetime, SessionLifetime, SessionIdleTimeout, EnrollWithin time.Duration
	// Passwords are the rules of a new password (docs/THREAT-MODEL.md R-S5).
	Passwords password.Policy
	// NewDeviceNotice mails the account when a sign-in completes in a
	// browser without its device cookie (issue 13; --notify-new-device).
	NewDeviceNotice bool
}

// Deps are the handler's explicit dependencies: nothing else is reached.
type Deps struct {
	Store   storage.Store
	Sealer  *seal.Sealer
	Hasher  *password.Hasher
	Guard   *guard.Guard
	Trail   *audit.Trail
	Pages   *pages.Pages
	Metrics *metrics.Registry
	Clients ClientNames
	// IPLimit is the optional per-address limit on form posts (nil: none).
	IPLimit *httpx.IPLimiter
	Cookies httpx.Cookies
	Log     *slog.Logger
	Now     func() time.Time
	// Notify queues the security notifications (nil: mail off).
	Notify *mail.Notifier
	Settings
}

// Handler is the login UI: the password, second-factor, enrollment and
// recovery pages of a sign-in (doc.go).
type Handler struct {
	store   storage.Store
	sealer  *seal.Sealer
	hasher  *password.Hasher
	guard   *guard.Guard
	trail   *audit.Trail
	pages   *pages.Pages
	metrics *metrics.Registry
	clients ClientNames
	ipLimit *httpx.IPLimiter
	cookies httpx.Cookies
	log     *slog.Logger
	now     func() time.Time
	notify  *mail.Notifier
	cfg     Settings
}

// New builds the login UI over d.
func New(d Deps) *Handler {
	return &Handler{store: d.Store, sealer: d.Sealer, hasher: d.Hasher, guard: d.Guard, trail: d.Trail, pages: d.Pages,
		metrics: d.Metrics, clients: d.Clients, ipLimit: d.IPLimit, cookies: d.Cookies, log: d.Log, now: d.Now, notify: d.Notify, cfg: d.Settings}
}
