package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// lbAuthorize sends an authorization request of public client id with
// redirect to b and returns the answer and the flow.
func lbAuthorize(t *testing.T, b *Browser, s *Server, id, redirect string) (Page, *Flow) {
	t.Helper()
	raw, f := AuthorizeURL(s, Client{ID: id, RedirectURI: redirect}, AuthParams{})
	f.B = b
	return b.Get(raw), f
}

// TestNativeLoopbackRedirectRFC8252: for a public (native) client a
// registered loopback redirect matches a request that differs only in its
// port, and only when the host is a loopback IP literal (RFC 8252 §7.3);
// scheme and host match exactly, localhost is not the IP literal (§8.3),
// and a fragment, user info, another path or query never match (RFC 9700
// §2.1, exact matching).
func TestNativeLoopbackRedirectRFC8252(t *testing.T) {
	t.Parallel()
	s := StartServer(t, fastPolicy...)
	CLI(t, s.DB, "", "client", "add", "native", "--public", "--redirect-uri", "http://127.0.0.1:9000/callback")
	CLI(t, s.DB, "", "client", "add", "native6", "--public", "--redirect-uri", "http://[::1]/cb")
	for _, tc := range []struct {
		client, redirect string
		ok               bool
	}{
		{"native", "http://127.0.0.1:9000/callback", true},
		{"native", "http://127.0.0.1:51234/callback", true},
		{"native", "http://127.0.0.1/callback", true},
		{"native6", "http://[::1]:4444/cb", true},
		{"native6", "http://[::1]/cb", true},
		{"native", "https://127.0.0.1:9000/callback", false},
		{"native", "HTTP://127.0.0.1:9000/callback", false},
		{"native", "http://localhost:9000/callback", false},
		{"native", "http://[::1]:9000/callback", false},
		{"native", "http://127.0.0.2:9000/callback", false},
		{"native", "http://127.000.000.001:9000/callback", false},
		{"native", "http://127.0.0.1:9000/callback#frag", false},
		{"native", "http://127.0.0.1:9000/callback#", false},
		{"native", "http://127.0.0.1:9000/callback/", false},
		{"native", "http://127.0.0.1:9000/Callback", false},
		{"native", "http://127.0.0.1:9000/callback?x=1", false},
		{"native", "http://127.0.0.1:9000/callback?", false},
		{"native", "http://user@127.0.0.1:9000/callback", false},
		{"native", "http://127.0.0.1:9000@evil.example/callback", false},
		{"native", "http://127.0.0.1:0/callback", false},
		{"native", "http://127.0.0.1:99999/callback", false},
		{"native", "http://127.0.0.1:/callback", false},
		{"native6", "http://127.0.0.1:4444/cb", false},
		{"native6", "http://localhost:4444/cb", false},
	} {
		p, _ := lbAuthorize(t, NewBrowser(t, ""), s, tc.client, tc.redirect)
		if tc.ok {
			if p.Status != http.StatusFound || !strings.Contains(p.Location, "/login/") {
				t.Errorf("%s %s: want the login page, got %d %q", tc.client, tc.redirect, p.Status, p.Location)
			}
			continue
		}
		if p.Status < 400 || p.Status > 499 || p.Location != "" {
			t.Errorf("%s %s: want an error page, got %d %q", tc.client, tc.redirect, p.Status, p.Location)
		}
	}

	// A whole sign-in on another port: the code goes there and is redeemed
	// for exactly that redirect URI.
	u := AddUser(t, s.DB, "nat", "correct horse battery")
	b := NewBrowser(t, "")
	redirect := "http://127.0.0.1:51234/callback"
	p, f := lbAuthorize(t, b, s, "native", redirect)
	f.LoginURL = p.Location
	f.Form = Hidden(b.Get(f.LoginURL).Body)
	atkPasswordOK(t, f, u.Name, u.Password)
	loc := f.Follow(f.TOTP(u.Code(time.Now())))
	if !strings.HasPrefix(loc, redirect+"?") {
		t.Fatalf("code sent to %s, want %s", loc, redirect)
	}
	code := f.CodeFrom(loc)
	st, body, _ := confForm(t, s.URL+"/oauth/token", Client{}, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirect}, "client_id": {"native"}, "code_verifier": {f.Verifier}})
	if st != http.StatusOK || body["id_token"] == nil {
		t.Fatalf("token exchange for the loopback redirect: %d %v", st, body)
	}
}
