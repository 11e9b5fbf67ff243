package pages

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

// TestHandle: a handler's returned failure becomes its page and, for a
// server-side failure, one log line with the cause, which the page never
// shows; a busy database is 503 with Retry-After.
func TestHandle(t *testing.T) {
	cause := errors.New("disk on fire /var/lib/idp")
	for _, c := range []struct {
		name    string
		err     error
		status  int
		logged  string // level of the log line; "" for none
		cause   string // what the log line must carry
		retry   bool
		showing string
	}{
		{"internal", Internal("user lookup", cause), 500, "ERROR", "disk on fire", false, "went wrong"},
		{"busy", Internal("claim", fmt.Errorf("claim: %w", storage.ErrBusy)), 503, "WARN", "database busy", true, "busy"},
		{"plain error", cause, 500, "ERROR", "disk on fire", false, "went wrong"},
		{"refusal", &Error{Status: 403, Msg: MsgForgery, What: "form token", Back: "/login/?id=x"}, 403, "", "", false, `href="/login/?id=x"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			p, err := New("T", slog.New(slog.NewTextHandler(&buf, nil)))
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			p.Handle(func(http.ResponseWriter, *http.Request) error { return c.err })(w, httptest.NewRequest("GET", "/login/", nil))
			body := w.Body.String()
			if w.Code != c.status || !strings.Contains(body, c.showing) {
				t.Errorf("status %d, want %d; body:\n%s", w.Code, c.status, body)
			}
			if strings.Contains(body, "disk on fire") {
				t.Error("the page shows the cause")
			}
			if got := w.Header().Get("Retry-After") != ""; got != c.retry {
				t.Errorf("Retry-After %q", w.Header().Get("Retry-After"))
			}
			log := buf.String()
			if c.logged == "" && log != "" || c.logged != "" && (!strings.Contains(log, "level="+c.logged) || !strings.Contains(log, c.cause)) {
				t.Errorf("log %q, want a %s line with the cause", log, c.logged)
			}
		})
	}
}

// TestHandleAnswers: the guard's refusal, a form shown again and a
// redirect are answers a handler returns like a failure; Fail writes each
// as itself and logs nothing.
func TestHandleAnswers(t *testing.T) {
	var buf bytes.Buffer
	p, err := New("T", slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		name   string
		err    error
		status int
		header [2]string
		body   string
	}{
		{"locked", &Locked{Retry: 90 * time.Second, Now: now, Back: "https://rp.example/cb?error=access_denied"}, 429, [2]string{"Retry-After", "90"}, "rp.example"},
		{"hard locked", &Locked{Hard: true, Now: now}, 429, [2]string{"Retry-After", "31536000"}, p.Text("title.locked")},
		{"form again", &Form{Status: 401, Page: "totp", Data: Data{Title: "title.code", Error: MsgWrongCode, ID: "flow-1"}}, 401, [2]string{"Cache-Control", "no-store"}, p.Text(MsgWrongCode)},
		{"wrapped form", fmt.Errorf("step: %w", &Form{Status: 400, Page: "recovery", Data: Data{Title: "title.recovery", Error: MsgBadRecovery}}), 400, [2]string{"Content-Type", "text/html; charset=utf-8"}, p.Text(MsgBadRecovery)},
		{"see other", &SeeOther{URL: "/login/?id=flow-1"}, 303, [2]string{"Location", "/login/?id=flow-1"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			buf.Reset()
			w := httptest.NewRecorder()
			p.Handle(func(http.ResponseWriter, *http.Request) error { return c.err })(w, httptest.NewRequest("POST", "/login/totp", nil))
			if w.Code != c.status || w.Header().Get(c.header[0]) != c.header[1] || !strings.Contains(w.Body.String(), c.body) {
				t.Errorf("status %d, %s %q; body:\n%s", w.Code, c.header[0], w.Header().Get(c.header[0]), w.Body.String())
			}
			if buf.Len() != 0 {
				t.Errorf("logged %q", buf.String())
			}
		})
	}
}
