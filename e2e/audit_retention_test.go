package e2e

// Audit retention: how long the trail keeps its rows.

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAuditRetention: the garbage collector deletes audit events older
// than --audit-retention (default 180 days) and keeps the rest; 0 keeps
// everything; a retention under a day is refused.
func TestAuditRetention(t *testing.T) {
	t.Parallel()
	s := StartServer(t)
	s.Stop()
	now := time.Now().Unix()
	day := int64(24 * 3600)
	for _, age := range []int64{200, 170, 1} {
		grwExec(t, s.DB, `INSERT INTO audit_events (time, type, detail) VALUES (?, 'test_event', ?)`, now-age*day, fmt.Sprintf("age=%dd", age))
	}
	ages := func() []string {
		var out []string
		for _, e := range atkOfType(atkAudit(t, s.DB, ""), "test_event") {
			out = append(out, e.Detail)
		}
		return out
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := strings.Join(ages(), " ")
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("audit events kept: %q, want %q", got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	s1 := StartServerOn(t, s.DB)
	waitFor("age=170d age=1d")
	s1.Stop()

	grwExec(t, s.DB, `INSERT INTO audit_events (time, type, detail) VALUES (?, 'test_event', 'age=400d')`, now-400*day)
	s0 := StartServerOn(t, s.DB, "--audit-retention", "0")
	time.Sleep(500 * time.Millisecond)
	waitFor("age=170d age=1d age=400d")
	s0.Stop()

	s2 := StartServerOn(t, s.DB, "--audit-retention", "720h")
	waitFor("age=1d")
	s2.Stop()

	_, errOut, err := CLIResult(s.DB, "", "serve", "--listen", "127.0.0.1:0", "--audit-retention", "1h")
	if err == nil || !strings.Contains(errOut, "audit-retention") {
		t.Errorf("--audit-retention 1h: err %v, stderr %q", err, errOut)
	}
}
