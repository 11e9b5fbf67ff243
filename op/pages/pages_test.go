package pages

import (
	"io/fs"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/templates"
)

// TestCatalogueComplete: every message key a template or the code uses is
// in the English catalogue, so no page ever shows a bare key.
func TestCatalogueComplete(t *testing.T) {
	msgs, err := loadCatalogue("en")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	keyRe := regexp.MustCompile(`\bt "([a-z_.]+)"`)
	entries, _ := fs.Glob(templates.FS, "*.html")
	for _, e := range entries {
		b, _ := fs.ReadFile(templates.FS, e)
		for _, m := range keyRe.FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
	}
	for _, k := range []string{MsgExpired, MsgInvalidLink, MsgOtherBrowser, MsgForgery, MsgUnreadable, MsgWrongPassword,
		MsgWrongCode, MsgBadCode, MsgNoUsername, MsgLongPassword, MsgLocked, MsgBusy, MsgInternal, MsgBadRecovery,
		MsgWrongRecovery, MsgNotFound, MsgUnknownClient, MsgBadRedirect, MsgBadRequest, MsgBadLogout, MsgIPLimited, MsgStartedElsewhere, MsgEnrollExpired,
		"title.signin", "title.code", "title.enroll", "title.codes", "title.recovery", "title.recovered",
		"title.locked", "title.error", "title.service_error", "title.loggedout", "title.logout",
		"duration.second", "duration.seconds", "duration.minute", "duration.minutes", "duration.hours",
		MsgDisabled, MsgPasswordsDiffer, MsgSamePassword, "title.newpassword"} {
		used[k] = true
	}
	// Every reason a new password is refused has its sentence.
	for _, r := range password.Reasons {
		used[MsgWeak(string(r))] = true
	}
	if len(used) < 40 {
		t.Fatalf("found only %d keys; the scan is broken", len(used))
	}
	for k := range used {
		if _, ok := msgs[k]; !ok {
			t.Errorf("message key %q missing from messages/en.json", k)
		}
	}
}

// TestPagesRender renders every page with the catalogue: no template
// error, no unresolved key, and the headers of docs/THREAT-MODEL.md R-W4.
func TestPagesRender(t *testing.T) {
	p, err := New("Test IdP", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := reflect.ValueOf(p.byName).Len(); got != len(pageNames) {
		t.Fatalf("%d templates", got)
	}
	for _, name := range pageNames {
		w := httptest.NewRecorder()
		p.Render(w, 200, name, Data{Title: "title.signin", Message: MsgLocked, Error: MsgWrongCode, ClientName: "App",
			RetryAt: "2026-01-01 00:00:00 UTC", RetryIn: "5 minutes", Codes: []string{"aaaaa-bbbbb"}, Left: 3})
		body := w.Body.String()
		if w.Code != 200 || !strings.Contains(body, "<html lang=\"en\">") {
			t.Errorf("%s: %d\n%s", name, w.Code, body)
		}
		for key := range p.msgs {
			if strings.Contains(key, ".") && strings.Contains(body, key) {
				t.Errorf("%s shows the bare key %q", name, key)
			}
		}
		h := w.Header()
		for k, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
			if h.Get(k) != want {
				t.Errorf("%s: %s = %q", name, k, h.Get(k))
			}
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s: CSP %q", name, csp)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	p, err := New("x", nil)
	if err != nil {
		t.Fatal(err)
	}
	for d, want := range map[time.Duration]string{
		time.Second: "1 second", 30 * time.Second: "30 seconds", time.Minute: "1 minute",
		61 * time.Second: "2 minutes", 15 * time.Minute: "15 minutes", 4 * time.Hour: "4.0 hours",
	} {
		if got := p.humanDuration(d); got != want {
			t.Errorf("humanDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
