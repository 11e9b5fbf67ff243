package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestFullLogin is the happy path: password, TOTP, code, token, verified ID
// token with amr pwd+otp+mfa.
func TestFullLogin(t *testing.T) {
	s := StartServer(t, fastPolicy...)
	u := AddUser(t, s.DB, "alice", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	b := NewBrowser(t, "")
	f := b.StartFlow(s, c, AuthParams{})
	code := f.Login(u)
	tok, err := rp.Exchange(f, code)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	cl := rp.VerifyID(t, tok, f)
	if cl.Sub != u.ID {
		t.Errorf("sub = %q, want %q", cl.Sub, u.ID)
	}
	for _, want := range []string{"pwd", "otp", "mfa"} {
		if !slices.Contains(cl.AMR, want) {
			t.Errorf("amr %v lacks %q", cl.AMR, want)
		}
	}
	if cl.AuthTime == 0 || time.Since(time.Unix(cl.AuthTime, 0)) > time.Minute {
		t.Errorf("auth_time %d not recent", cl.AuthTime)
	}
	if cl.ACR == "" || cl.AZP != c.ID {
		t.Errorf("acr %q azp %q", cl.ACR, cl.AZP)
	}
	if cl.Email != "alice@example.com" || cl.PrefUser != "alice" {
		t.Errorf("profile/email claims: %+v", cl)
	}
}

// TestNoCodeAfterPasswordOnly: after the password step alone, neither the
// callback nor a repeated authorize yields a code (docs/THREAT-MODEL.md rule 7).
func TestNoCodeAfterPasswordOnly(t *testing.T) {
	s := StartServer(t, fastPolicy...)
	u := AddUser(t, s.DB, "bob", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	b := NewBrowser(t, "")
	f := b.StartFlow(s, c, AuthParams{})
	if p := f.Password(u.Name, u.Password); p.Status != http.StatusSeeOther {
		t.Fatalf("password: %d", p.Status)
	}
	cb := b.Get(s.URL + "/authorize/callback?id=" + f.Form.Get("id"))
	if strings.Contains(cb.Location, "code=") {
		t.Fatalf("callback after password only issued a code: %s", cb.Location)
	}
	if !strings.Contains(cb.Location, "error=interaction_required") {
		t.Errorf("callback: want interaction_required redirect, got %d %s", cb.Status, cb.Location)
	}
	// A second authorize in the same browser starts over at the password.
	f2 := b.StartFlow(s, c, AuthParams{})
	if f2.Form.Get("id") == f.Form.Get("id") {
		t.Fatal("authorize reused the half-done request")
	}
}
