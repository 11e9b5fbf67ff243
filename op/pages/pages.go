// Package pages renders every HTML answer of the provider: the login
// pages, the error, lockout and logout pages, from the templates and the
// message catalogue of the top-level templates package, with the headers
// every HTML answer carries (docs/THREAT-MODEL.md R-W4). Handlers that
// answer with a page return an *Error instead of writing one; Handle turns
// it into the page the person sees and the log line the operator reads.
package pages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/totp-idp/idp/templates"
)

// Messages shown to people are keys of the message catalogue
// (templates/messages/LANG.json): plain sentences; details go to the log.
const (
	MsgExpired          = "msg.expired"
	MsgInvalidLink      = "msg.invalid_link"
	MsgOtherBrowser     = "msg.other_browser"
	MsgStartedElsewhere = "msg.started_elsewhere"
	MsgForgery          = "msg.forgery"
	MsgUnreadable       = "msg.form_unreadable"
	MsgWrongPassword    = "msg.wrong_password"
	MsgWrongCode        = "msg.wrong_code"
	MsgBadCode          = "msg.bad_code"
	MsgNoUsername       = "msg.no_username"
	MsgLongPassword     = "msg.long_password"
	MsgLocked           = "msg.locked"
	MsgBusy             = "msg.busy"
	MsgInternal         = "msg.internal"
	MsgBadRecovery      = "msg.bad_recovery"
	MsgWrongRecovery    = "msg.wrong_recovery"
	MsgNotFound         = "msg.not_found"
	MsgUnknownClient    = "msg.unknown_client"
	MsgBadRedirect      = "msg.bad_redirect"
	MsgBadRequest       = "msg.bad_request"
	MsgBadLogout        = "msg.bad_logout"
	MsgIPLimited        = "msg.ip_limited"
	MsgEnrollExpired    = "msg.enroll_expired"
	MsgDisabled         = "msg.disabled"
	MsgPasswordsDiffer  = "msg.passwords_differ"
	MsgSamePassword     = "msg.same_password"
)

// MsgWeak is the catalogue key saying why a new password was refused
// (password.Reason: too_short, common, ...).
func MsgWeak(reason string) string { return "msg.weak_" + reason }

// Data is what every page template may use.
type Data struct {
	Title      string
	Product    string
	ClientName string
	ID         string
	CSRF       string
	Username   string
	Error      string
	Message    string
	RetryAt    string
	RetryIn    string
	BackURL    string
	// Enrollment and recovery pages.
	QRURL       string
	Secret      string
	Codes       []string
	DownloadURL template.URL
	ContinueURL string
	Left        int
	// Fields are hidden form fields carried over (the logout page).
	Fields []Field
	// AfterEnroll: the code page of a request that has just enrolled.
	AfterEnroll bool
	// Wide lays the page out for tables (the account page); Account is
	// that page's view.
	Wide    bool
	Account any
	// Mailed links' pages (verify an address, reset a password): the
	// link's token, carried to the form that uses it; the address; Done
	// once used.
	Token string
	Email string
	Done  bool
	// Forgot: the password page offers "Forgot your password?" (mail on).
	Forgot bool
	// QRSVG is a QR code drawn inline (the account page's new
	// authenticator): module coordinates only.
	QRSVG template.HTML
}

// Field is a hidden form field.
type Field struct{ Name, Value string }

type Pages struct {
	product string
	log     *slog.Logger
	msgs    catalogue
	byName  map[string]*template.Template
	css     []byte
}

// pageNames are the templates, each rendered inside layout.html.
var pageNames = []string{"password", "totp", "enroll", "codes", "recovery", "recovered", "locked", "error", "loggedout", "logout",
	"newpassword", "account", "newcodes", "newtotp", "verifyemail", "forgot", "reset"}

// Has reports whether the catalogue has a sentence for key.
func (p *Pages) Has(key string) bool { _, ok := p.msgs[key]; return ok }

// catalogue maps message keys to sentences of one language.
type catalogue map[string]string

// t formats message key with args; an unknown key shows as itself (a test
// keeps the catalogue complete).
func (c catalogue) t(key string, args ...any) string {
	f, ok := c[key]
	if !ok {
		return key
	}
	if len(args) == 0 {
		return f
	}
	return fmt.Sprintf(f, args...)
}

func loadCatalogue(lang string) (catalogue, error) {
	b, err := fs.ReadFile(templates.FS, "messages/"+lang+".json")
	if err != nil {
		return nil, err
	}
	var c catalogue
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("messages/%s.json: %w", lang, err)
	}
	return c, nil
}

// New loads the templates and the English catalogue; log takes the lines
// of failures (Fail).
func New(product string, log *slog.Logger) (*Pages, error) {
	msgs, err := loadCatalogue("en")
	if err != nil {
		return nil, err
	}
	p := &Pages{product: product, log: log, msgs: msgs, byName: map[string]*template.Template{}}
	funcs := template.FuncMap{"t": msgs.t}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templates.FS, "layout.html", name+".html")
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		p.byName[name] = t
	}
	css, err := fs.ReadFile(templates.FS, "style.css")
	if err != nil {
		return nil, err
	}
	p.css = css
	return p, nil
}

// Headers are set on every HTML answer (docs/THREAT-MODEL.md R-W4).
func Headers(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// Render writes page name with d.
func (p *Pages) Render(w http.ResponseWriter, status int, name string, d Data) {
	d.Product = p.product
	var buf bytes.Buffer
	if err := p.byName[name].ExecuteTemplate(&buf, "layout", d); err != nil {
		http.Error(w, p.msgs.t(MsgInternal), http.StatusInternalServerError)
		return
	}
	Headers(w)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// Error writes the error page with msg and a way back (may be empty).
func (p *Pages) Error(w http.ResponseWriter, status int, msg, back string) {
	p.ErrorFor(w, status, msg, back, "")
}

// ErrorFor is Error with a link back to a named application.
func (p *Pages) ErrorFor(w http.ResponseWriter, status int, msg, back, clientName string) {
	title := "title.error"
	if status >= 500 {
		title = "title.service_error"
	}
	p.Render(w, status, "error", Data{Title: title, Message: msg, BackURL: back, ClientName: clientName})
}

// Locked answers 429 with Retry-After (docs/THREAT-MODEL.md rule 4).
func (p *Pages) Locked(w http.ResponseWriter, retry time.Duration, hard bool, now time.Time, back string) {
	p.tooMany(w, MsgLocked, retry, hard, now, back)
}

// Limited answers 429 for the per-address limit (the outer layer).
func (p *Pages) Limited(w http.ResponseWriter, retry time.Duration, now time.Time) {
	p.tooMany(w, MsgIPLimited, retry, false, now, "")
}

func (p *Pages) tooMany(w http.ResponseWriter, msg string, retry time.Duration, hard bool, now time.Time, back string) {
	d := Data{Title: "title.locked", Message: msg, BackURL: back}
	if !hard {
		secs := int((retry + time.Second - 1) / time.Second)
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		d.RetryAt = now.Add(time.Duration(secs) * time.Second).UTC().Format("15:04 UTC on 2 Jan 2006")
		d.RetryIn = p.humanDuration(time.Duration(secs) * time.Second)
	} else {
		w.Header().Set("Retry-After", strconv.Itoa(365*24*3600))
	}
	p.Render(w, http.StatusTooManyRequests, "locked", d)
}

func (p *Pages) humanDuration(d time.Duration) string {
	switch {
	case d <= time.Second:
		return p.msgs.t("duration.second")
	case d < time.Minute:
		return p.msgs.t("duration.seconds", int(d.Seconds()))
	case d <= time.Minute:
		return p.msgs.t("duration.minute")
	case d < time.Hour:
		return p.msgs.t("duration.minutes", int((d+time.Minute-1)/time.Minute))
	default:
		return p.msgs.t("duration.hours", d.Hours())
	}
}

// ServeCSS serves the pages' one style sheet.
func (p *Pages) ServeCSS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(p.css)
}

// Text is the catalogue's sentence for key (tests compare pages with it).
func (p *Pages) Text(key string, args ...any) string { return p.msgs.t(key, args...) }
