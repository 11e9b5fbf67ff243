package op

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/storage"
)

// resetLinkOf requests a reset link for ann through the forgot form and
// returns its token, read from the sealed outbox row.
func (e *testEnv) resetLinkOf(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	addr, yes := "ann@example.com", true
	if err := e.store.UpdateUser(ctx, e.annID(t), storage.UserUpdate{Email: &addr, EmailVerified: &yes}); err != nil {
		t.Fatal(err)
	}
	resp, err := e.browser().PostForm(e.ts.URL+"/login/forgot", url.Values{"identifier": {"ann"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("forgot: %d", resp.StatusCode)
	}
	ms, err := e.store.Mails(ctx, storage.MailFilter{Pending: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Kind != mail.ResetPassword {
			continue
		}
		plain, err := e.srv.cfg.Sealer.Open(mail.AAD(m.ID), m.Body)
		if err != nil {
			t.Fatal(err)
		}
		var msg struct{ Text string }
		if err := json.Unmarshal(plain, &msg); err != nil {
			t.Fatal(err)
		}
		if g := regexp.MustCompile(`/login/reset\?t=([A-Za-z0-9_-]{43})`).FindStringSubmatch(msg.Text); g != nil {
			return g[1]
		}
	}
	t.Fatalf("no reset link in the outbox (%d mails)", len(ms))
	return ""
}

// TestResetBusyHasher: with every hashing slot taken by others (a flood
// of made-up names can do that), the reset page answers 503 before it
// claims: the owner's right code is not counted as a failure (review G,
// F1: it was, after the claim, once per try). With a slot free, the same
// post resets.
func TestResetBusyHasher(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Mail = true })
	ctx := context.Background()
	token := e.resetLinkOf(t)
	h := e.srv.Hasher()
	var slots []interface{ Release() }
	for range 2 { // the test hasher's concurrency
		s, err := h.Reserve(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slots = append(slots, s)
	}
	form := url.Values{"t": {token}, "code": {e.annCode(t, time.Now())}, "new": {"marble orchard three"}, "repeat": {"marble orchard three"}}
	resp, err := e.browser().PostForm(e.ts.URL+"/login/reset", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a reset with every hashing slot taken: %d, want 503", resp.StatusCode)
	}
	states, err := e.store.AttemptStates(ctx, e.annID(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range states {
		if st.Factor == storage.FactorTOTP && st.Failures != 0 {
			t.Fatalf("the TOTP counter after a busy 503: %+v, want nothing counted", st)
		}
	}
	for _, s := range slots {
		s.Release()
	}
	resp, err = e.browser().PostForm(e.ts.URL+"/login/reset", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the reset with a slot free: %d", resp.StatusCode)
	}
	if u, _ := e.store.UserByUsername(ctx, "ann"); !strings.HasPrefix(u.PasswordHash, "$argon2id$") || u.PasswordChangedAt.IsZero() {
		t.Fatalf("after the reset: %+v", u)
	}
}
