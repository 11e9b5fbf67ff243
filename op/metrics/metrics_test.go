package metrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHandler: what the provider counts comes out in the Prometheus text
// format under its names, requests by route class and status, with the
// Go runtime's metrics beside them.
func TestHandler(t *testing.T) {
	m := New()
	m.Attempt("totp", "failed")
	m.Attempt("totp", "failed")
	m.Attempt("password", "ok")
	m.AuditSuppressed("logout")
	m.IPLimited()
	m.SecondFactorFailedAfterPassword()
	m.HashWait(3 * time.Millisecond)
	m.Transaction(2*time.Millisecond, "ok")
	m.Retry()
	m.GaugeFunc("idp_test_gauge", "a gauge", func() float64 { return 7 })
	h := m.Instrument("login", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/login/totp", nil))
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body := w.Body.String()
	for _, want := range []string{
		`idp_auth_attempts_total{factor="totp",result="failed"} 2`,
		`idp_auth_attempts_total{factor="password",result="ok"} 1`,
		`idp_audit_suppressed_total{event="logout"} 1`,
		`idp_login_ip_limited_total 1`,
		`idp_second_factor_failed_after_password_total 1`,
		`idp_password_hash_queue_wait_seconds_count 1`,
		`idp_db_transaction_duration_seconds_count{outcome="ok"} 1`,
		`idp_db_retries_total 1`,
		`idp_test_gauge 7`,
		`idp_http_requests_total{class="login",code="429"} 1`,
		`idp_http_request_duration_seconds_count{class="login"} 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in\n%s", want, body)
		}
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", w.Header().Get("Cache-Control"))
	}
}
