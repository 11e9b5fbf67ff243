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
