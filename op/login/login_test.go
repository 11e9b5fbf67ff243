package login

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/totp-idp/idp/storage"
)

// TestCSRFTokenBinding: the form token depends on both the flow's cookie
// secret and its id, so a token of one flow or one browser is worth
// nothing in another (docs/THREAT-MODEL.md R-W1).
func TestCSRFTokenBinding(t *testing.T) {
	base := CSRFToken("secret-a", "flow-1")
	for name, other := range map[string]string{
		"another browser": CSRFToken("secret-b", "flow-1"),
		"another flow":    CSRFToken("secret-a", "flow-2"),
		"shifted":         CSRFToken("secret-af", "low-1"),
	} {
		if other == base {
			t.Errorf("%s: same token", name)
		}
	}
	if CSRFToken("secret-a", "flow-1") != base || len(base) != 43 {
		t.Errorf("token %q not stable or not 256 bits", base)
	}
}

// TestAppErrorURL: the way back to the application carries the error, the
// request's state and iss (RFC 6749 §4.1.2.1, RFC 9207), in the fragment
// when the request asked for it, and keeps the registered URI's query.
func TestAppErrorURL(t *testing.T) {
	h := &Handler{cfg: Settings{Issuer: "https://idp.example"}}
	for _, c := range []struct {
		a        storage.AuthRequest
		fragment bool
	}{
		{storage.AuthRequest{RedirectURI: "https://rp.example/cb?tenant=7", State: "s&1"}, false},
		{storage.AuthRequest{RedirectURI: "https://rp.example/cb", State: "s2", ResponseMode: "fragment"}, true},
	} {
		u, err := url.Parse(h.AppErrorURL(&c.a, "access_denied", "too many failed attempts"))
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		if c.fragment {
			q, _ = url.ParseQuery(u.Fragment)
		}
		if q.Get("error") != "access_denied" || q.Get("iss") != "https://idp.example" || q.Get("state") != c.a.State ||
			q.Get("error_description") != "too many failed attempts" || u.Host != "rp.example" {
			t.Errorf("%s: %s", c.a.RedirectURI, u)
		}
		if !c.fragment && u.Query().Get("tenant") != "7" {
			t.Errorf("the registered query was lost: %s", u)
		}
	}
	if got := URL("a b&c"); got != "/login/?id=a+b%26c" {
		t.Errorf("URL escapes the id as %q", got)
	}
}

// TestSSOCookieNeedsBoth: the SSO credential is read only when both
// cookies are there and as this provider makes them (R-W8).
func TestSSOCookieNeedsBoth(t *testing.T) {
	h := &Handler{}
	for _, tc := range []struct {
		session, bind string
		want          string
	}{
		{"abc", "def", "abc.def"},
		{"abc", "", ""},
		{"", "def", ""},
		{"a.b", "c", ""}, // would join like ("a", "b.c")
		{"abc", "d%2Ee", ""},
		{strings.Repeat("a", maxSSOCookie+1), "def", ""},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tc.session != "" {
			r.AddCookie(&http.Cookie{Name: "idp_session", Value: tc.session})
		}
		if tc.bind != "" {
			r.AddCookie(&http.Cookie{Name: "idp_bind", Value: tc.bind})
		}
		if got := h.SSOCookie(r); got != tc.want {
			t.Errorf("session %q, binding %q: %q, want %q", tc.session, tc.bind, got, tc.want)
		}
	}
}
