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

// webCheckHTML asserts the headers every HTML answer carries (docs/THREAT-MODEL.md R-W4).
func webCheckHTML(t *testing.T, name string, p Page) {
	t.Helper()
	if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("%s: Content-Type %q", name, ct)
		return
	}
	csp := p.Header.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "object-src 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("%s: CSP %q lacks %s", name, csp, d)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(p.Body, "<script") || strings.Contains(p.Body, " style=") {
		t.Errorf("%s: inline script or style", name)
	}
	for k, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
		"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
		if got := p.Header.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", name, k, got, want)
		}
	}
	for _, c := range p.Header.Values("Set-Cookie") {
		lc := strings.ToLower(c)
		if !strings.Contains(lc, "httponly") || !strings.Contains(lc, "samesite=lax") || !strings.Contains(lc, "path=/") || strings.Contains(lc, "domain=") {
			t.Errorf("%s: cookie %q lacks HttpOnly, SameSite=Lax or Path=/, or has a Domain", name, c)
		}
	}
}

// TestHTMLRoutesHeaders visits every HTML route of the login UI and the
// browser-facing protocol errors, and checks headers and cookies.
func TestHTMLRoutesHeaders(t *testing.T) {
	s := StartServer(t, append(fastPolicy, "--totp-max-failures", "1", "--totp-lock", "1h", "--totp-lock-max", "1h")...)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "hanna", "correct horse battery")
	enr := enrAddUserAtLogin(t, s.DB, "henry", "correct horse battery")
	b := NewBrowser(t, "")
	pages := map[string]Page{}

	authURL, _ := AuthorizeURL(s, c, AuthParams{})
	r := b.Get(authURL)
	pages["password"] = b.Get(r.Location)
	f := &Flow{B: b, S: s, C: c, LoginURL: r.Location, Form: Hidden(pages["password"].Body)}
	pages["wrong password"] = f.Password("hanna", "wrong password!")
	f.Form = Hidden(pages["wrong password"].Body)
	p := f.Password(u.Name, u.Password)
	pages["totp"] = b.Get(p.Location)
	f.Form = Hidden(pages["totp"].Body)
	pages["recovery"] = b.Get(s.URL + "/login/recovery?id=" + url.QueryEscape(f.Form.Get("id")))
	pages["wrong code"] = f.TOTP("000000")
	pages["locked"] = f.TOTP(u.Code(time.Now()))
	if pages["locked"].Status != http.StatusTooManyRequests {
		t.Fatalf("locked page: %d", pages["locked"].Status)
	}

	fe := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	pages["enroll"] = enrPasswordToEnroll(t, fe, enr)
	secret := enrSecret(t, pages["enroll"].Body)
	pages["codes"] = enrPost(fe, "/login/enroll", url.Values{"code": {enrCode(t, secret, time.Now())}})

	pages["bad link"] = b.Get(s.URL + "/login/?id=nope")
	pages["not found"] = b.Get(s.URL + "/login/nope")
	pages["logged out"] = b.Get(s.URL + "/login/logged-out")
	pages["unknown client"] = b.Get(s.URL + "/authorize?client_id=nope&response_type=code&scope=openid&redirect_uri=https://rp.example/cb/app")
	pages["bad redirect"] = b.Get(s.URL + "/authorize?client_id=app&response_type=code&scope=openid&redirect_uri=https://evil.example/cb")
	other := NewBrowser(t, "")
	pages["callback other browser"] = other.Get(s.URL + "/authorize/callback?id=" + url.QueryEscape(f.Form.Get("id")))
	pages["forged post"] = other.Post(s.URL+"/login/password", url.Values{"id": {f.Form.Get("id")}, "username": {"x"}, "password": {"y"}})

	want := map[string]int{
		"password": 200, "wrong password": 401, "totp": 200, "recovery": 200, "wrong code": 401, "locked": 429,
		"enroll": 200, "codes": 200, "bad link": 400, "not found": 404, "logged out": 200,
		"unknown client": 400, "bad redirect": 400, "callback other browser": 403, "forged post": 403,
	}
	for name, status := range want {
		p := pages[name]
		if p.Status != status {
			t.Errorf("%s: status %d, want %d", name, p.Status, status)
		}
		webCheckHTML(t, name, p)
	}
	if !strings.Contains(pages["unknown client"].Body, "not registered") || !strings.Contains(pages["bad redirect"].Body, "not registered for it") {
		t.Error("protocol error pages do not explain the problem")
	}
	if pages["bad redirect"].Location != "" || pages["unknown client"].Location != "" {
		t.Error("an unregistered redirect URI or client was redirected to")
	}
	css := b.Get(s.URL + "/login/static/style.css")
	if css.Status != 200 || !strings.HasPrefix(css.Header.Get("Content-Type"), "text/css") || css.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("stylesheet: %d %v", css.Status, css.Header)
	}
}

// TestSecureCookiesForHTTPSIssuer: with an https issuer, cookies are
// Secure with the __Host- prefix, and HSTS is sent.
func TestSecureCookiesForHTTPSIssuer(t *testing.T) {
	s := StartServer(t, "--issuer", "https://id.example.test")
	// The issuer names no real host: talk to the listener directly so no
	// name is ever resolved.
	m := regexp.MustCompile(`idp listening on (\S+) `).FindStringSubmatch(s.Stderr())
	if m == nil {
		t.Fatalf("no listen address in:\n%s", s.Stderr())
	}
	base := "http://" + m[1]
	c := AddClient(t, s.DB, "app")
	b := NewBrowser(t, "")
	u, _ := AuthorizeURL(&Server{URL: base}, c, AuthParams{})
	r := b.Get(u)
	if !strings.Contains(r.Location, "/login/") {
		t.Fatalf("authorize: %d %s", r.Status, r.Location)
	}
	// The flow cookie is set on the /authorize answer (the request is
	// bound to the browser that called it).
	p := r
	cookies := p.Header.Values("Set-Cookie")
	if len(cookies) == 0 {
		t.Fatal("no cookie set on the /authorize answer")
	}
	for _, ck := range cookies {
		if !strings.HasPrefix(ck, "__Host-") || !strings.Contains(ck, "; Secure") || !strings.Contains(ck, "Path=/") || strings.Contains(strings.ToLower(ck), "domain=") {
			t.Errorf("cookie %q: want __Host- prefix, Secure, Path=/, no Domain", ck)
		}
	}
	if h := p.Header.Get("Strict-Transport-Security"); !strings.Contains(h, "max-age=") {
		t.Errorf("HSTS %q", h)
	}
	// And over a loopback http issuer there is no HSTS.
	s2 := StartServer(t)
	if h := NewBrowser(t, "").Get(s2.URL + "/login/logged-out").Header.Get("Strict-Transport-Security"); h != "" {
		t.Errorf("HSTS over http: %q", h)
	}
}

// TestLoginForgeryRefused: cross-site posts, posts without the flow token
// and with another flow's token get 403 (docs/THREAT-MODEL.md R-W1).
func TestLoginForgeryRefused(t *testing.T) {
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "ivy", "correct horse battery")
	b := NewBrowser(t, "")
	f1 := b.StartFlow(s, c, AuthParams{})
	f2 := b.StartFlow(s, c, AuthParams{})
	form := func(token string) url.Values {
		return url.Values{"id": {f1.Form.Get("id")}, "csrf": {token}, "username": {u.Name}, "password": {u.Password}}
	}
	post := func(v url.Values, hdr map[string]string) int {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/login/password", strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, val := range hdr {
			req.Header.Set(k, val)
		}
		return b.do(req).Status
	}
	cases := []struct {
		name string
		v    url.Values
		hdr  map[string]string
	}{
		{"cross-site fetch metadata", form(f1.Form.Get("csrf")), map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"foreign Origin", form(f1.Form.Get("csrf")), map[string]string{"Origin": "https://evil.example"}},
		{"no token", form(""), map[string]string{"Sec-Fetch-Site": "same-origin"}},
		{"another flow's token", form(f2.Form.Get("csrf")), map[string]string{"Sec-Fetch-Site": "same-origin"}},
	}
	for _, tc := range cases {
		if st := post(tc.v, tc.hdr); st != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", tc.name, st)
		}
	}
	// The genuine post passes.
	if st := post(form(f1.Form.Get("csrf")), map[string]string{"Sec-Fetch-Site": "same-origin"}); st != http.StatusSeeOther {
		t.Fatalf("genuine post: %d", st)
	}
}

// TestFlowCookieRenewed: the flow cookie differs before login, after the
// password and after the TOTP step, and an old value is refused (docs/THREAT-MODEL.md R-W2).
func TestFlowCookieRenewed(t *testing.T) {
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "jack", "correct horse battery")
	b := NewBrowser(t, "")
	f := b.StartFlow(s, c, AuthParams{})
	base, _ := url.Parse(s.URL)
	flowCookie := func() string {
		for _, ck := range b.Jar.Cookies(base) {
			if strings.HasPrefix(ck.Name, "idp_flow_") {
				return ck.Value
			}
		}
		return ""
	}
	v0 := flowCookie()
	if v0 == "" {
		t.Fatal("no flow cookie after the login page")
	}
	p := f.Password(u.Name, u.Password)
	v1 := flowCookie()
	page := b.Get(p.Location)
	f.Form = Hidden(page.Body)
	// An attacker holding the pre-login value (fixation) is refused.
	fixed := NewBrowser(t, "")
	fixed.Jar.SetCookies(base, []*http.Cookie{{Name: webFlowCookieName(b, base), Value: v0, Path: "/"}})
	if st := fixed.Post(s.URL+"/login/totp", url.Values{"id": {f.Form.Get("id")}, "csrf": {f.Form.Get("csrf")}, "code": {u.Code(time.Now())}}).Status; st != http.StatusForbidden {
		t.Fatalf("old flow cookie after the password step: %d, want 403", st)
	}
	redirect := f.Follow(f.TOTP(u.Code(time.Now())))
	v2 := flowCookie()
	if v0 == v1 || v1 == v2 || v0 == v2 || v2 == "" {
		t.Fatalf("flow cookie not renewed: %q %q %q", v0, v1, v2)
	}
	f.CodeFrom(redirect)
}

func webFlowCookieName(b *Browser, base *url.URL) string {
	for _, ck := range b.Jar.Cookies(base) {
		if strings.HasPrefix(ck.Name, "idp_flow_") {
			return ck.Name
		}
	}
	return ""
}

// TestMalformedLoginInput: clear 400 answers, nothing lost.
func TestMalformedLoginInput(t *testing.T) {
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "kate", "correct horse battery")
	b := NewBrowser(t, "")
	f := b.StartFlow(s, c, AuthParams{})
	post := func(path string, extra url.Values) Page {
		v := url.Values{"id": {f.Form.Get("id")}, "csrf": {f.Form.Get("csrf")}}
		for k, vs := range extra {
			v[k] = vs
		}
		return b.Post(s.URL+path, v)
	}
	cases := []struct {
		name string
		form url.Values
		want string
	}{
		{"overlong username", url.Values{"username": {strings.Repeat("a", 200)}, "password": {"x"}}, "at most 128"},
		{"empty username", url.Values{"username": {"  "}, "password": {"x"}}, "at most 128"},
		{"overlong password", url.Values{"username": {"kate"}, "password": {strings.Repeat("p", 2000)}}, "1024 bytes"},
		{"oversized body", url.Values{"username": {"kate"}, "password": {strings.Repeat("p", 70<<10)}}, "could not be read"},
		{"control characters", url.Values{"username": {"ka\x00te"}, "password": {"x"}}, "at most 128"},
	}
	for _, tc := range cases {
		p := post("/login/password", tc.form)
		if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, tc.want) {
			t.Errorf("%s: %d, want 400 with %q", tc.name, p.Status, tc.want)
		}
	}
	// The flow still works after all that.
	if p := f.Password(u.Name, u.Password); p.Status != http.StatusSeeOther {
		t.Fatalf("password after malformed input: %d", p.Status)
	}
	f.Form = Hidden(b.Get(f.LoginURL).Body)
	for _, code := range []string{"12345a", "12", "１２３４５６"} {
		if p := f.TOTP(code); p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "6-digit code") {
			t.Errorf("code %q: %d", code, p.Status)
		}
	}
	spaced := u.Code(time.Now())
	spaced = spaced[:3] + " " + spaced[3:]
	f.CodeFrom(f.Follow(f.TOTP(spaced)))
	if out := CLI(t, s.DB, "", "user", "show", u.Name); !regexp.MustCompile(`totp:\s+failures 0`).MatchString(out) {
		t.Errorf("malformed codes were counted as guesses:\n%s", out)
	}
}

// TestExpiredSignInLink: an expired auth request says so and offers the way
// back to the application.
func TestExpiredSignInLink(t *testing.T) {
	s := StartServer(t, "--auth-request-lifetime", "1s")
	c := AddClient(t, s.DB, "app")
	b := NewBrowser(t, "")
	f := b.StartFlow(s, c, AuthParams{})
	time.Sleep(2100 * time.Millisecond)
	p := b.Get(f.LoginURL)
	if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "has expired") {
		t.Fatalf("expired link: %d\n%s", p.Status, p.Body)
	}
	m := regexp.MustCompile(`<a class="button" href="([^"]+)"`).FindStringSubmatch(p.Body)
	if m == nil {
		t.Fatal("no way back to the application")
	}
	back, _ := url.Parse(html.UnescapeString(m[1]))
	if !strings.HasPrefix(m[1], c.RedirectURI) || back.Query().Get("error") != "access_denied" || back.Query().Get("state") != f.State {
		t.Fatalf("way back %q", m[1])
	}
}
