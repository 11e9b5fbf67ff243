package e2e

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// issParams returns the authorization response parameters of loc: its
// query, or its fragment for response_mode=fragment.
func issParams(t *testing.T, loc string, fragment bool) url.Values {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("redirect %q: %v", loc, err)
	}
	if fragment {
		v, err := url.ParseQuery(u.Fragment)
		if err != nil {
			t.Fatalf("fragment of %q: %v", loc, err)
		}
		return v
	}
	return u.Query()
}

// TestAuthorizationResponseIssuer (RFC 9207): every authorization
// response, success or error, carries iss with the issuer identifier, in
// the query or, for response_mode=fragment, the fragment; discovery says
// so. response_mode=form_post, whose page cannot carry iss, is refused.
func TestAuthorizationResponseIssuer(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	s := p.s
	if d := confDiscovery(t, s); d.Raw["authorization_response_iss_parameter_supported"] != true {
		t.Errorf("discovery: authorization_response_iss_parameter_supported = %v, want true", d.Raw["authorization_response_iss_parameter_supported"])
	}
	wantIss := func(what string, q url.Values) {
		t.Helper()
		if got := q["iss"]; len(got) != 1 || got[0] != s.URL {
			t.Errorf("%s: iss %q, want exactly [%q]", what, got, s.URL)
		}
	}

	// Success, query and fragment.
	for _, mode := range []string{"", "query", "fragment"} {
		u := confNewUser(t, s)
		extra := url.Values{}
		if mode != "" {
			extra.Set("response_mode", mode)
		}
		f, _ := confStart(t, NewBrowser(t, ""), s, p.a, AuthParams{Extra: extra})
		atkPasswordOK(t, f, u.Name, u.Password)
		loc := f.Follow(f.TOTP(u.Code(time.Now())))
		q := issParams(t, loc, mode == "fragment")
		if q.Get("code") == "" || q.Get("state") != f.State {
			t.Fatalf("response_mode %q: no code or state in %s", mode, loc)
		}
		wantIss("success, response_mode "+mode, q)
		if mode == "fragment" && strings.Contains(loc, "?") {
			t.Errorf("fragment response with a query: %s", loc)
		}
	}

	// Errors the library redirects: prompt=none without a session, and
	// our own refusals (PKCE missing, form_post).
	for name, params := range map[string]AuthParams{
		"prompt=none":          {Extra: url.Values{"prompt": {"none"}}},
		"no PKCE":              {NoPKCE: true},
		"form_post":            {Extra: url.Values{"response_mode": {"form_post"}}},
		"oversized login_hint": {Extra: url.Values{"login_hint": {strings.Repeat("x", 3000)}}},
	} {
		raw, _ := AuthorizeURL(s, p.a, params)
		r := NewBrowser(t, "").Get(raw)
		if r.Status != http.StatusFound {
			t.Fatalf("%s: want an error redirect, got %d %q", name, r.Status, r.Location)
		}
		q := confRedirectQuery(t, r.Location, p.a.RedirectURI)
		if q.Get("error") == "" {
			t.Fatalf("%s: no error in %s", name, r.Location)
		}
		wantIss(name+" ("+q.Get("error")+")", q)
	}
	// A fragment-mode error goes to the fragment.
	raw, _ := AuthorizeURL(s, p.a, AuthParams{Extra: url.Values{"prompt": {"none"}, "response_mode": {"fragment"}}})
	r := NewBrowser(t, "").Get(raw)
	if q := issParams(t, r.Location, true); q.Get("error") != "login_required" {
		t.Errorf("fragment-mode error: %d %s", r.Status, r.Location)
	} else {
		wantIss("fragment-mode error", q)
	}

	// The way back from an expired sign-in link (our own error redirect).
	se := StartServer(t, "--auth-request-lifetime", "1s")
	c := AddClient(t, se.DB, "app")
	b := NewBrowser(t, "")
	f := b.StartFlow(se, c, AuthParams{})
	time.Sleep(2100 * time.Millisecond)
	page := b.Get(f.LoginURL)
	m := regexp.MustCompile(`<a class="button" href="([^"]+)"`).FindStringSubmatch(page.Body)
	if m == nil {
		t.Fatalf("expired link page without a way back: %d\n%s", page.Status, page.Body)
	}
	back, _ := url.Parse(html.UnescapeString(m[1]))
	if got := back.Query()["iss"]; len(got) != 1 || got[0] != se.URL {
		t.Errorf("way back from an expired link %s: iss %q, want %q", m[1], got, se.URL)
	}
}
