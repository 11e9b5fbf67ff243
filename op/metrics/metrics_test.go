package metrics

import (
	"strings"
	"testing"
)

// TestWriteText: counters come out sorted, one TYPE line per name, with
// the counts added.
func TestWriteText(t *testing.T) {
	m := New()
	m.Attempt("totp", "failed")
	m.Attempt("totp", "failed")
	m.Attempt("password", "ok")
	m.Inc("idp_audit_suppressed_total", `event="logout"`)
	var b strings.Builder
	m.WriteText(&b)
	want := `# TYPE idp_audit_suppressed_total counter
idp_audit_suppressed_total{event="logout"} 1
# TYPE idp_auth_attempts_total counter
idp_auth_attempts_total{factor="password",result="ok"} 1
idp_auth_attempts_total{factor="totp",result="failed"} 2
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}
