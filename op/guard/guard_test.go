package guard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

// events returns the audit trail's event types for user (all users when
// ""), oldest first, and their details.
func events(t *testing.T, st storage.Store, user string) ([]string, []string) {
	t.Helper()
	es, err := st.ListAudit(context.Background(), storage.AuditFilter{UserID: user})
	if err != nil {
		t.Fatal(err)
	}
	var types, details []string
	for _, e := range es {
		types = append(types, e.Type)
		details = append(details, e.Detail)
	}
	return types, details
}

func count(types []string) map[string]int {
	n := map[string]int{}
	for _, t := range types {
		n[t]++
	}
	return n
}

// attempt claims and fails one attempt of f as the login would, and
// returns the claim.
func attempt(t *testing.T, g *Guard, u storage.User, f storage.Factor) storage.AttemptClaim {
	t.Helper()
	c, err := g.Claim(context.Background(), u.ID, u.Username, "app", f)
	if err != nil {
		t.Fatal(err)
	}
	if c.Allowed {
		g.Failed(context.Background(), c, string(f)+"_failed", u.ID, u.Username, "app", f, "", "")
	}
	return c
}

// TestLockPaths walks every way a counter refuses, with the audit event
// each writes (docs/THREAT-MODEL.md rules 3–4, 13): free failures, a
// delay, a refusal during it, the limit of a decaying password counter
// (which forgives one failure per decay period and never hard-locks), and
// the second factor's hard lock.
func TestLockPaths(t *testing.T) {
	for _, c := range []struct {
		name   string
		factor storage.Factor
		// after the 10th failure (the limit): the event written, and
		// whether an hour's wait lets one attempt through again.
		limitEvent string
		hard       bool
		decays     bool
	}{
		{"password", storage.FactorPassword, "limit_reached", false, true},
		{"totp", storage.FactorTOTP, "hard_lock", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, st, u, clk := newTestGuard(t, [32]byte{3})
			for i := 1; i <= 2; i++ {
				if cl := attempt(t, g, u, c.factor); !cl.Allowed || cl.RetryAfter != 0 {
					t.Fatalf("free failure %d: %+v", i, cl)
				}
			}
			cl := attempt(t, g, u, c.factor)
			if !cl.Allowed || cl.RetryAfter != time.Second {
				t.Fatalf("3rd attempt: %+v, want allowed, setting a 1 s lock", cl)
			}
			if refused := attempt(t, g, u, c.factor); refused.Allowed || refused.RetryAfter <= 0 || refused.HardLocked {
				t.Fatalf("attempt inside the lock: %+v", refused)
			}
			for i := 4; i <= 10; i++ {
				clk.add(time.Minute)
				if cl = attempt(t, g, u, c.factor); !cl.Allowed {
					t.Fatalf("attempt %d after the lock: %+v", i, cl)
				}
			}
			if !cl.AtLimit || cl.HardLocked != c.hard {
				t.Fatalf("10th failure: %+v", cl)
			}
			clk.add(2 * time.Minute)
			if refused := attempt(t, g, u, c.factor); refused.Allowed || refused.HardLocked != c.hard {
				t.Fatalf("attempt at the limit: %+v", refused)
			}
			clk.add(time.Hour)
			if again := attempt(t, g, u, c.factor); again.Allowed != c.decays {
				t.Fatalf("an hour later: %+v, want allowed=%t", again, c.decays)
			}
			types, _ := events(t, st, u.ID)
			n := count(types)
			for _, want := range []string{"lock_started", "locked_refused", c.limitEvent} {
				if n[want] == 0 {
					t.Errorf("no %s event in %v", want, types)
				}
			}
			if after := n["second_factor_failed_after_password"]; c.factor == storage.FactorTOTP && after != 10 || c.factor == storage.FactorPassword && after != 0 {
				t.Errorf("%d second_factor_failed_after_password events for %s", after, c.factor)
			}
		})
	}
}

// TestUnknownNameCounter: a name without an account has a counter like an
// account's, keyed by a keyed hash that is the same for every spelling the
// store sees and differs per name and per database; its audit rows never
// carry the name.
func TestUnknownNameCounter(t *testing.T) {
	ctx := context.Background()
	g, st, _, clk := newTestGuard(t, [32]byte{4})
	var key string
	for i := 1; i <= 3; i++ {
		c, k, err := g.ClaimUnknown(ctx, "nobody-hunter2", "app")
		if err != nil || !c.Allowed {
			t.Fatalf("claim %d: %+v %v", i, c, err)
		}
		key = k
		g.Failed(ctx, c, "password_failed", "", "", "app", storage.FactorPassword, k, "counter=shared")
	}
	if c, _, _ := g.ClaimUnknown(ctx, "nobody-hunter2", "app"); c.Allowed {
		t.Fatalf("unknown name inside its lock: %+v", c)
	}
	clk.add(time.Minute)
	if c, _, _ := g.ClaimUnknown(ctx, "someone-else", "app"); !c.Allowed || c.Failures != 1 {
		t.Fatalf("another name shares the counter: %+v", c)
	}
	if key != NameKey([32]byte{4}, "nobody-hunter2") || key == NameKey([32]byte{5}, "nobody-hunter2") || key == NameKey([32]byte{4}, "nobody-hunter3") {
		t.Error("the counter key is not the name's keyed hash")
	}
	types, details := events(t, st, "")
	es, _ := st.ListAudit(ctx, storage.AuditFilter{})
	for _, e := range es {
		details = append(details, e.Username, e.UserID)
	}
	text := strings.Join(details, "\n")
	if strings.Contains(text, "nobody") || !strings.Contains(text, "name_key="+key[:12]) || count(types)["locked_refused"] != 1 {
		t.Errorf("audit of an unknown name:\n%s", text)
	}
}

// TestPasswordRefund: a right password gives back exactly its own claim on
// the shared counter, so the failures before it still count; on a device's
// counter nothing is given back (RememberDevice renews the device).
func TestPasswordRefund(t *testing.T) {
	ctx := context.Background()
	g, st, u, _ := newTestGuard(t, [32]byte{6})
	for i := 0; i < 2; i++ {
		attempt(t, g, u, storage.FactorPassword)
	}
	r := httptest.NewRequest(http.MethodPost, "https://idp.example/login/password", nil)
	c, counter, err := g.ClaimPassword(ctx, httptest.NewRecorder(), r, u, "app")
	if err != nil || !c.Allowed || counter.Note() != "counter=shared" || c.Failures != 3 {
		t.Fatalf("claim: %+v %s %v", c, counter.Note(), err)
	}
	if err := g.PasswordSucceeded(ctx, u.ID, c, counter); err != nil {
		t.Fatal(err)
	}
	states, err := st.AttemptStates(ctx, u.ID)
	if err != nil || len(states) != 1 || states[0].Failures != 2 {
		t.Fatalf("after the right password: %+v %v, want the 2 failures before it", states, err)
	}
	if err := g.PasswordSucceeded(ctx, u.ID, c, Counter{device: []byte("d")}); err != nil {
		t.Fatal(err)
	}
	if again, _ := st.AttemptStates(ctx, u.ID); again[0].Failures != 2 {
		t.Errorf("a device claim's success changed the shared counter: %+v", again)
	}
}

// TestDeviceCounter: a live device cookie puts the account's password
// attempts on the device's own counter, so failures elsewhere do not lock
// it; the device is forgotten at its limit (cookie cleared, audit row),
// and then the browser counts on the shared counter again.
func TestDeviceCounter(t *testing.T) {
	ctx := context.Background()
	g, st, u, clk := newTestGuard(t, [32]byte{7})
	w := httptest.NewRecorder()
	g.RememberDevice(ctx, w, httptest.NewRequest(http.MethodPost, "https://idp.example/login/totp", nil), u.ID, nil, clk.now())
	cookie := w.Result().Cookies()[0]
	withCookie := func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "https://idp.example/login/password", nil)
		r.AddCookie(cookie)
		return r
	}
	for i := 0; i < 6; i++ { // the shared counter is locked by others
		clk.add(2 * time.Minute)
		attempt(t, g, u, storage.FactorPassword)
	}
	for i := 1; i <= 5; i++ {
		w := httptest.NewRecorder()
		c, counter, err := g.ClaimPassword(ctx, w, withCookie(), u, "app")
		if err != nil || !c.Allowed || counter.Note() != "counter=device" {
			t.Fatalf("device attempt %d: %+v %s %v", i, c, counter.Note(), err)
		}
		g.Failed(ctx, c, "password_failed", u.ID, u.Username, "app", storage.FactorPassword, "", counter.Note())
		cleared := false
		for _, k := range w.Result().Cookies() {
			cleared = cleared || k.Name == g.DeviceCookieName() && k.MaxAge < 0
		}
		if cleared != (i == 5) || c.AtLimit != (i == 5) {
			t.Fatalf("device attempt %d: cleared=%t %+v", i, cleared, c)
		}
		if i == 3 {
			// The device's own lock refuses at once, audited, and the
			// shared counter is not consulted instead.
			refused, counter, err := g.ClaimPassword(ctx, httptest.NewRecorder(), withCookie(), u, "app")
			if err != nil || refused.Allowed || refused.RetryAfter <= 0 || counter.Note() != "counter=device" {
				t.Fatalf("inside the device's lock: %+v %s %v", refused, counter.Note(), err)
			}
		}
		clk.add(2 * time.Minute)
	}
	c, counter, err := g.ClaimPassword(ctx, httptest.NewRecorder(), withCookie(), u, "app")
	if err != nil || counter.Note() != "counter=shared" || c.Failures < 7 {
		t.Fatalf("after the device was forgotten: %+v %s %v", c, counter.Note(), err)
	}
	types, _ := events(t, st, u.ID)
	if n := count(types); n["device_forgotten"] != 1 || n["limit_reached"] != 0 || n["hard_lock"] != 0 || n["locked_refused"] != 1 {
		// A device at its limit is forgotten; the account is not locked.
		t.Errorf("device audit: %v", types)
	}
}
