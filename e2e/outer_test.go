package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestPerIPLimitIsAnOuterLayer: with --login-rate-per-ip, an address that
// posts too fast gets 429 before anything is evaluated, other addresses
// are unaffected, and the per-account counter is untouched by refused
// posts.
func TestPerIPLimitIsAnOuterLayer(t *testing.T) {
	const burst = 4 // one /authorize and three posts
	s := StartServer(t, append(fastPolicy, "--login-rate-per-ip", "1", "--login-burst-per-ip", fmt.Sprint(burst))...)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "olga", "correct horse battery")
	noisy := NewBrowser(t, "127.0.0.21")
	f := noisy.StartFlow(s, c, AuthParams{})
	for i := 0; i < burst-1; i++ {
		if p := f.Password(u.Name, "wrong password!"); p.Status != http.StatusUnauthorized {
			t.Fatalf("post %d: %d, want 401", i+1, p.Status)
		}
	}
	p := f.Password(u.Name, "wrong password!")
	if p.Status != http.StatusTooManyRequests || p.Header.Get("Retry-After") == "" || !strings.Contains(p.Body, "from your network") {
		t.Fatalf("post %d: %d %q", burst, p.Status, p.Header.Get("Retry-After"))
	}
	// A new authorization request from that address is refused as well.
	authURL, _ := AuthorizeURL(s, c, AuthParams{})
	if p := noisy.Get(authURL); p.Status != http.StatusTooManyRequests {
		t.Fatalf("/authorize from the limited address: %d", p.Status)
	}
	if out := CLI(t, s.DB, "", "user", "show", u.Name); !strings.Contains(out, fmt.Sprintf("failures %d,", burst-1)) {
		t.Fatalf("a refused post moved the account counter:\n%s", out)
	}
	// Another address is not limited: its first wrong guess is
	// evaluated (401), and the limit never locked the account for others.
	quiet := NewBrowser(t, "127.0.0.22")
	fq := quiet.StartFlow(s, c, AuthParams{})
	if p := fq.Password(u.Name, "wrong password!"); p.Status != http.StatusUnauthorized {
		t.Fatalf("another address: %d, want 401", p.Status)
	}
}

// TestRefusedLogoutKeepsSession: an end_session with an unregistered
// post_logout_redirect_uri is refused and does not clear the SSO cookie.
func TestRefusedLogoutKeepsSession(t *testing.T) {
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "pia", "correct horse battery")
	b := NewBrowser(t, "")
	f := b.StartFlow(s, c, AuthParams{})
	f.Login(u)
	p := b.Get(s.URL + "/end_session?" + url.Values{"client_id": {c.ID}, "post_logout_redirect_uri": {"https://evil.example/"}}.Encode())
	if strings.HasPrefix(p.Location, "https://evil.example") {
		t.Fatalf("redirected to an unregistered post-logout URI: %s", p.Location)
	}
	for _, ck := range p.Header.Values("Set-Cookie") {
		if strings.HasPrefix(ck, "idp_session=") {
			t.Fatalf("a refused logout cleared the session cookie: %s", ck)
		}
	}
	// The session still answers prompt=none.
	u2, f2 := AuthorizeURL(s, c, AuthParams{Extra: url.Values{"prompt": {"none"}}})
	f2.B = b
	r := b.Get(u2)
	f2.CodeFrom(f2.Follow(r))
}

// TestRepeatedCallbackGetsNoSecondCode: hitting the callback again after
// the code was issued yields access_denied, not a server error.
func TestRepeatedCallbackGetsNoSecondCode(t *testing.T) {
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "quinn", "correct horse battery")
	b := NewBrowser(t, "")
	f := b.StartFlow(s, c, AuthParams{})
	f.Login(u)
	again := b.Get(s.URL + "/authorize/callback?id=" + url.QueryEscape(f.Form.Get("id")))
	loc, _ := url.Parse(again.Location)
	if loc == nil || loc.Query().Get("code") != "" || loc.Query().Get("error") != "access_denied" {
		t.Fatalf("repeated callback: %d %s", again.Status, again.Location)
	}
}

// TestSSOSessionIdleTimeout: a session unused for longer than
// --session-idle-timeout no longer satisfies prompt=none (NIST AAL2
// reauthentication, docs/THREAT-MODEL.md R-W3), while a fresh one does.
func TestSSOSessionIdleTimeout(t *testing.T) {
	s := StartServer(t, append(fastPolicy, "--session-idle-timeout", "2s")...)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "tess", "correct horse battery")
	b := NewBrowser(t, "")
	b.StartFlow(s, c, AuthParams{}).Login(u)
	silent := func() string {
		u2, f := AuthorizeURL(s, c, AuthParams{Extra: url.Values{"prompt": {"none"}}})
		f.B = b
		loc, _ := url.Parse(f.Follow(b.Get(u2)))
		if loc.Query().Get("code") != "" {
			return "code"
		}
		return loc.Query().Get("error")
	}
	if got := silent(); got != "code" {
		t.Fatalf("fresh session: prompt=none gave %q", got)
	}
	time.Sleep(3 * time.Second)
	if got := silent(); got != "login_required" {
		t.Fatalf("idle session: prompt=none gave %q, want login_required", got)
	}
}
