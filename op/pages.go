package op

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/totp-idp/idp/templates"
)

// Messages shown to people are keys of the message catalogue
// (templates/messages/LANG.json): plain sentences; details go to the log.
const (
	msgExpired          = "msg.expired"
	msgInvalidLink      = "msg.invalid_link"
	msgOtherBrowser     = "msg.other_browser"
	msgStartedElsewhere = "msg.started_elsewhere"
	msgForgery          = "msg.forgery"
	msgUnreadable       = "msg.form_unreadable"
	msgWrongPassword    = "msg.wrong_password"
	msgWrongCode        = "msg.wrong_code"
	msgBadCode          = "msg.bad_code"
	msgNoUsername       = "msg.no_username"
	msgLongPassword     = "msg.long_password"
	msgLocked           = "msg.locked"
	msgBusy             = "msg.busy"
	msgInternal         = "msg.internal"
	msgBadRecovery      = "msg.bad_recovery"
	msgWrongRecovery    = "msg.wrong_recovery"
	msgNotFound         = "msg.not_found"
	msgUnknownClient    = "msg.unknown_client"
	msgBadRedirect      = "msg.bad_redirect"
	msgBadRequest       = "msg.bad_request"
	msgBadLogout        = "msg.bad_logout"
	msgIPLimited        = "msg.ip_limited"
	msgEnrollExpired    = "msg.enroll_expired"
)

// pageData is what every page template may use.
type pageData struct {
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
	Fields []field
	// AfterEnroll: the code page of a request that has just enrolled.
	AfterEnroll bool
}

// field is a hidden form field.
type field struct{ Name, Value string }

type pages struct {
	product string
	msgs    catalogue
	byName  map[string]*template.Template
	css     []byte
}

// pageNames are the templates, each rendered inside layout.html.
var pageNames = []string{"password", "totp", "enroll", "codes", "recovery", "recovered", "locked", "error", "loggedout", "logout"}

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

func newPages(product string) (*pages, error) {
	msgs, err := loadCatalogue("en")
	if err != nil {
		return nil, err
	}
	p := &pages{product: product, msgs: msgs, byName: map[string]*template.Template{}}
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

// htmlHeaders are set on every HTML answer (docs/THREAT-MODEL.md R-W4).
func htmlHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func (p *pages) render(w http.ResponseWriter, status int, name string, d pageData) {
	d.Product = p.product
	var buf bytes.Buffer
	if err := p.byName[name].ExecuteTemplate(&buf, "layout", d); err != nil {
		http.Error(w, p.msgs.t(msgInternal), http.StatusInternalServerError)
		return
	}
	htmlHeaders(w)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (p *pages) errorPage(w http.ResponseWriter, _ *http.Request, status int, msg, back string) {
	p.errorPageFor(w, status, msg, back, "")
}

// errorPageFor is errorPage with a link back to a named application.
func (p *pages) errorPageFor(w http.ResponseWriter, status int, msg, back, clientName string) {
	title := "title.error"
	if status >= 500 {
		title = "title.service_error"
	}
	p.render(w, status, "error", pageData{Title: title, Message: msg, BackURL: back, ClientName: clientName})
}

// locked answers 429 with Retry-After (docs/THREAT-MODEL.md rule 4).
func (p *pages) locked(w http.ResponseWriter, retry time.Duration, hard bool, now time.Time, back string) {
	p.tooMany(w, msgLocked, retry, hard, now, back)
}

// limited answers 429 for the per-address limit (the outer layer).
func (p *pages) limited(w http.ResponseWriter, retry time.Duration, now time.Time) {
	p.tooMany(w, msgIPLimited, retry, false, now, "")
}

func (p *pages) tooMany(w http.ResponseWriter, msg string, retry time.Duration, hard bool, now time.Time, back string) {
	d := pageData{Title: "title.locked", Message: msg, BackURL: back}
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
	p.render(w, http.StatusTooManyRequests, "locked", d)
}

func (p *pages) humanDuration(d time.Duration) string {
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

func (p *pages) serveCSS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(p.css)
}

func itoa(n int) string { return strconv.Itoa(n) }
