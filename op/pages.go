package op

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/totp-idp/idp/templates"
)

// Messages shown to people: plain sentences; details go to the log.
const (
	msgExpired       = "This sign-in link has expired or is not valid. Go back to the application and sign in again."
	msgOtherBrowser  = "This sign-in was started in another browser. Go back to the application and sign in again."
	msgForgery       = "The form could not be verified. Reload the page and try again."
	msgWrongPassword = "The username or password is not correct."
	msgWrongCode     = "That code is not correct. Wait for a new code and try again."
	msgBadCode       = "Enter the 6-digit code from your authenticator app."
	msgNoUsername    = "Enter a username of at most 128 characters."
	msgLongPassword  = "Passwords can be at most 1024 bytes long."
	msgLocked        = "Too many failed attempts for this account."
	msgBusy          = "The service is busy. Please try again in a moment."
	msgNoTOTP        = "No authenticator app is set up for this account. Ask your administrator."
	msgInternal      = "Something went wrong on our side. Please try again."
	msgBadRecovery   = "Enter a recovery code: 26 letters and digits, dashes optional."
	msgWrongRecovery = "That recovery code is not valid or has been used."
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
	// Enrolment and recovery pages.
	QRURL       string
	Secret      string
	Codes       []string
	DownloadURL template.URL
	ContinueURL string
	Left        int
}

type pages struct {
	product string
	byName  map[string]*template.Template
	css     []byte
}

func newPages(product string) (*pages, error) {
	p := &pages{product: product, byName: map[string]*template.Template{}}
	for _, name := range []string{"password", "totp", "enroll", "codes", "recovery", "recovered", "locked", "error", "loggedout"} {
		t, err := template.ParseFS(templates.FS, "layout.html", name+".html")
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

// htmlHeaders are set on every HTML answer (SECURITY-RESEARCH R-W4).
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
		http.Error(w, msgInternal, http.StatusInternalServerError)
		return
	}
	htmlHeaders(w)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (p *pages) errorPage(w http.ResponseWriter, _ *http.Request, status int, msg, back string) {
	title := "Sign-in problem"
	if status >= 500 {
		title = "Service problem"
	}
	p.render(w, status, "error", pageData{Title: title, Message: msg, BackURL: back})
}

// locked answers 429 with Retry-After (threat model rule 4).
func (p *pages) locked(w http.ResponseWriter, retry time.Duration, hard bool, now time.Time, back string) {
	d := pageData{Title: "Too many attempts", Message: msgLocked, BackURL: back}
	if !hard {
		secs := int((retry + time.Second - 1) / time.Second)
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		d.RetryAt = now.Add(time.Duration(secs) * time.Second).UTC().Format("2006-01-02 15:04:05 UTC")
		d.RetryIn = humanDuration(time.Duration(secs) * time.Second)
	} else {
		w.Header().Set("Retry-After", strconv.Itoa(365*24*3600))
	}
	p.render(w, http.StatusTooManyRequests, "locked", d)
}

func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d seconds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d minutes", int((d+time.Minute-1)/time.Minute))
	default:
		return fmt.Sprintf("%.1f hours", d.Hours())
	}
}

func (p *pages) serveCSS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(p.css)
}

func itoa(n int) string { return strconv.Itoa(n) }
