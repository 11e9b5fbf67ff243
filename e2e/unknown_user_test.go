package e2e

import (
	"strings"
	"testing"
)

// TestUnknownUsernameNotInAuditOrLog: a name without an account (often a
// password typed into the wrong field) reaches neither the audit trail
// nor the log nor the database in clear; the trail records its keyed hash,
// the same for every attempt with that name.
func TestUnknownUsernameNotInAuditOrLog(t *testing.T) {
	t.Parallel()
	s := StartServer(t, atkArgs(fastPolicy, []string{"--log-level", "debug", "--password-max-failures", "2", "--password-lock", "60s", "--password-lock-max", "120s"})...)
	c := AddClient(t, s.DB, "app")
	typed := "correct-horse-" + strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(randString()))
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	for i := 0; i < 4; i++ {
		p := f.Password(typed, "whatever-"+typed)
		if id := Hidden(p.Body).Get("id"); id != "" {
			f.Form = Hidden(p.Body)
		}
	}
	evs := atkAudit(t, s.DB, "")
	var refs []string
	for _, e := range evs {
		if strings.Contains(e.Username+e.Detail+e.UserID, typed) {
			t.Errorf("audit %s records the typed name: %+v", e.Event, e)
		}
		if e.Event == "password_failed" {
			refs = append(refs, e.Detail)
		}
	}
	if atkCount(evs, "password_failed") != 2 || atkCount(evs, "lock_started") != 1 || atkCount(evs, "locked_refused") < 1 {
		t.Errorf("want 2 password_failed, 1 lock_started and a locked_refused for the unknown name, got %+v", evs)
	}
	for _, d := range refs {
		if !strings.Contains(d, "unknown user") || !strings.Contains(d, "name_key=") {
			t.Errorf("password_failed for an unknown name without its key: %q", d)
		}
	}
	if len(refs) == 2 && grwKey(refs[0]) != grwKey(refs[1]) {
		t.Errorf("the same name got two keys: %q, %q", refs[0], refs[1])
	}
	log := s.Stderr()
	if !strings.Contains(log, "password_failed") {
		t.Fatalf("the debug log shows no audit lines:\n%s", log)
	}
	if strings.Contains(log, typed) {
		t.Errorf("the server log contains the typed name")
	}
	s.Stop()
	if strings.Contains(secDump(t, s.DB), typed) {
		t.Errorf("the database contains the typed name")
	}
}

func grwKey(detail string) string {
	_, k, _ := strings.Cut(detail, "name_key=")
	k, _, _ = strings.Cut(k, " ")
	return k
}
