package e2e

// Unauthenticated storage growth: what a stranger can make the provider
// store. Helpers start with grw; the audit and username tests use them too.

import (
	"database/sql"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// grwExec runs one statement on the database of a (possibly running)
// server, as a legacy row or an old event would have been written.
func grwExec(t *testing.T, db, query string, args ...any) {
	t.Helper()
	conn, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// grwQueryInt reads one integer from the database.
func grwQueryInt(t *testing.T, db, query string, args ...any) int {
	t.Helper()
	conn, err := sql.Open("sqlite", "file:"+db+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n int
	if err := conn.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// grwPostAuthorize sends an authorization request as a form post (the way
// to send more than the 16 KiB a request line may carry).
func grwPostAuthorize(t *testing.T, s *Server, q url.Values) Page {
	t.Helper()
	b := NewBrowser(t, "")
	req, err := http.NewRequest(http.MethodPost, s.URL+"/authorize", strings.NewReader(q.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// TestAuthorizeRefusesOversizedParameters: /authorize stores state,
// nonce, login_hint, acr_values, ui_locales, scopes, prompt and the code
// challenge for the lifetime of the request, for anyone who asks. Values
// beyond the documented caps are refused with invalid_request at the
// (validated) redirect URI (RFC 6749 §4.1.2.1), and nothing is stored;
// values at the caps still work.
func TestAuthorizeRefusesOversizedParameters(t *testing.T) {
	t.Parallel()
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	many := func(v string, n int) string { return strings.TrimSpace(strings.Repeat(v+" ", n)) }
	for _, tc := range []struct {
		name      string
		param     string
		value     string
		keepState bool // the error echoes the request's state
	}{
		{"state 60000 bytes", "state", strings.Repeat("s", 60000), false},
		{"state 2049 bytes", "state", strings.Repeat("s", 2049), false},
		{"nonce", "nonce", strings.Repeat("n", 2049), true},
		{"login_hint", "login_hint", strings.Repeat("h", 2049), true},
		{"acr_values count", "acr_values", many("urn:x", 50), true},
		{"acr_values length", "acr_values", "urn:" + strings.Repeat("a", 300), true},
		{"ui_locales count", "ui_locales", many("fr", 50), true},
		{"scope count", "scope", many("openid", 100), true},
		{"prompt count", "prompt", many("login", 20), true},
		{"code_challenge length", "code_challenge", strings.Repeat("c", 200), true},
		{"response_mode", "response_mode", strings.Repeat("m", 5000), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := grwQueryInt(t, s.DB, `SELECT COUNT(*) FROM auth_requests`)
			raw, f := AuthorizeURL(s, c, AuthParams{})
			au, _ := url.Parse(raw)
			q := au.Query()
			q.Set(tc.param, tc.value)
			p := grwPostAuthorize(t, s, q)
			if p.Status != http.StatusFound || !strings.HasPrefix(p.Location, c.RedirectURI+"?") {
				t.Fatalf("%s: want 302 to the client with an error, got %d %.200q", tc.name, p.Status, p.Location)
			}
			rq := confRedirectQuery(t, p.Location, c.RedirectURI)
			if rq.Get("error") != "invalid_request" || rq.Has("code") {
				t.Errorf("%s: want error=invalid_request, got %.300s", tc.name, p.Location)
			}
			wantState := f.State
			if !tc.keepState {
				wantState = "" // not echoed: the value itself is what is refused
			}
			if rq.Get("state") != wantState {
				t.Errorf("%s: state %.40q, want %.40q", tc.name, rq.Get("state"), wantState)
			}
			if after := grwQueryInt(t, s.DB, `SELECT COUNT(*) FROM auth_requests`); after != before {
				t.Errorf("%s: %d auth request(s) stored", tc.name, after-before)
			}
		})
	}
	if n := grwQueryInt(t, s.DB, `SELECT COALESCE(MAX(LENGTH(state) + LENGTH(nonce) + LENGTH(login_hint) + LENGTH(acr_values) + LENGTH(ui_locales) + LENGTH(scopes) + LENGTH(prompt) + LENGTH(code_challenge) + LENGTH(response_mode)), 0) FROM auth_requests`); n > 0 {
		t.Errorf("largest stored auth request holds %d bytes of request parameters", n)
	}

	// At the caps, a sign-in works and the state comes back unchanged.
	u := AddUser(t, s.DB, "capped", "correct horse battery")
	b := NewBrowser(t, "")
	raw, fl := AuthorizeURL(s, c, AuthParams{Extra: url.Values{
		"login_hint": {"capped"}, "acr_values": {many("urn:x", 8)}, "ui_locales": {many("de", 8)},
	}})
	au, _ := url.Parse(raw)
	q := au.Query()
	fl.B, fl.State, fl.Nonce = b, strings.Repeat("S", 2048), strings.Repeat("N", 2048)
	q.Set("state", fl.State)
	q.Set("nonce", fl.Nonce)
	r := b.Get(s.URL + "/authorize?" + q.Encode())
	if r.Status != http.StatusFound || !strings.Contains(r.Location, "/login/") {
		t.Fatalf("parameters at the caps: %d %.200q", r.Status, r.Location)
	}
	fl.LoginURL = r.Location
	fl.Form = Hidden(b.Get(fl.LoginURL).Body)
	atkPasswordOK(t, fl, u.Name, u.Password)
	fl.CodeFrom(fl.Follow(fl.TOTP(u.Code(time.Now()))))
}
