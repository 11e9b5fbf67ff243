package e2e

import (
	"fmt"
	"net/http"
	"testing"
)

// TestAnonymousAuditEventsRateLimited: requests without any credential
// (no flow cookie, no session, a locked or made-up name) can trigger audit
// events. Such events are rate-limited per subject and per kind; what is
// dropped is counted in idp_audit_suppressed_total and in the next row
// that is written. A logout that ended nothing writes no row.
func TestAnonymousAuditEventsRateLimited(t *testing.T) {
	t.Parallel()
	args := atkArgs(fastPolicy, atkMetricsFlag, []string{"--password-max-failures", "2", "--password-lock", "60s", "--password-lock-max", "120s"})
	s := StartServer(t, args...)
	c := AddClient(t, s.DB, "app")

	// One authorization request, its login link opened 40 times by a
	// client that never kept the flow cookie.
	const hits = 40
	raw, _ := AuthorizeURL(s, c, AuthParams{})
	r := NewBrowser(t, "").Get(raw)
	if r.Status != http.StatusFound {
		t.Fatalf("authorize: %d", r.Status)
	}
	for i := 0; i < hits; i++ {
		if p := NewBrowser(t, "").Get(r.Location); p.Status != http.StatusForbidden {
			t.Fatalf("login page without the flow cookie: %d", p.Status)
		}
	}
	// Forty cookie-less logouts that end nothing.
	for i := 0; i < hits; i++ {
		if p := NewBrowser(t, "").Get(s.URL + "/end_session"); p.Status >= 400 {
			t.Fatalf("end_session: %d", p.Status)
		}
	}
	// A name nobody has, locked, then tried 40 more times.
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	for i := 0; i < 2+hits; i++ {
		p := f.Password("nobody-at-all", "wrong password!")
		if i >= 2 && p.Status != http.StatusTooManyRequests {
			t.Fatalf("attempt %d on a locked name: %d", i+1, p.Status)
		}
		if id := Hidden(p.Body).Get("id"); id != "" {
			f.Form = Hidden(p.Body)
		}
	}

	evs := atkAudit(t, s.DB, "")
	m := atkMetrics(t, s)
	for _, typ := range []string{"binding_mismatch", "locked_refused"} {
		n := atkCount(evs, typ)
		suppressed := m[fmt.Sprintf(`idp_audit_suppressed_total{event=%q}`, typ)]
		if n < 1 || n > 5 {
			t.Errorf("%d anonymous requests wrote %d %s rows, want between 1 and 5", hits, n, typ)
		}
		if int(suppressed)+n != hits {
			t.Errorf("%s: %d rows + %v suppressed, want %d in all", typ, n, suppressed, hits)
		}
	}
	if n := atkCount(evs, "logout"); n != 0 {
		t.Errorf("%d logouts that ended nothing wrote %d logout rows", hits, n)
	}

	// Many subjects: made-up names, one wrong password each. Every name
	// has a fresh bucket; the per-kind budget bounds the rows.
	const names = 60
	for i := 0; i < names; i++ {
		p := f.Password(fmt.Sprintf("made-up-%d", i), "wrong password!")
		if p.Status != http.StatusUnauthorized {
			t.Fatalf("made-up name %d: %d", i, p.Status)
		}
		f.Form = Hidden(p.Body)
	}
	n := atkCount(atkAudit(t, s.DB, ""), "password_failed") - 2
	if n > 40 {
		t.Errorf("%d made-up names wrote %d password_failed rows", names, n)
	}
	if got := atkMetrics(t, s)[`idp_audit_suppressed_total{event="password_failed"}`]; int(got)+n != names {
		t.Errorf("password_failed: %d rows + %v suppressed, want %d", n, got, names)
	}
	t.Logf("%d made-up names → %d password_failed rows", names, n)
}
