package e2e

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// RP-initiated logout (RP-Initiated Logout 1.0 §2) and what it may end: the
// browser's own SSO session and the tokens issued through it, never an
// offline_access grant, and never on the strength of an id_token_hint alone
// (ID tokens are not secrets: they travel in query strings).

// lgRecoveryCodes issues a set of recovery codes for u: each gives one more
// full login without waiting for a new TOTP step.
func lgRecoveryCodes(t *testing.T, s *Server, u User) []string {
	t.Helper()
	var codes []string
	for _, l := range strings.Split(CLI(t, s.DB, "", "user", "recovery-codes", u.Name), "\n") {
		if l = strings.TrimSpace(l); strings.Count(l, "-") == 4 && len(l) == 30 {
			codes = append(codes, l)
		}
	}
	if len(codes) == 0 {
		t.Fatal("no recovery codes printed")
	}
	return codes
}

// lgLogin signs u in with a recovery code in browser b and exchanges the
// code for tokens of scope.
func lgLogin(t *testing.T, s *Server, c Client, rp *RP, b *Browser, u User, code, scope string) *oauth2.Token {
	t.Helper()
	f := b.StartFlow(s, c, AuthParams{Scope: scope, Extra: url.Values{"prompt": {"login"}}})
	if p := f.Password(u.Name, u.Password); p.Status != http.StatusSeeOther {
		t.Fatalf("password: %d", p.Status)
	}
	f.Form = Hidden(b.Get(s.URL + "/login/recovery?id=" + url.QueryEscape(f.Form.Get("id"))).Body)
	p := enrPost(f, "/login/recovery", url.Values{"recovery_code": {code}})
	m := enrLinkRe.FindStringSubmatch(p.Body)
	if p.Status != http.StatusOK || m == nil {
		t.Fatalf("recovery login: %d\n%s", p.Status, p.Body)
	}
	cont := strings.ReplaceAll(m[1], "&amp;", "&")
	if !strings.HasPrefix(cont, "http") {
		cont = s.URL + cont
	}
	tok, err := rp.Exchange(f, f.CodeFrom(f.Follow(b.Get(cont))))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

func lgAccessLive(t *testing.T, s *Server, tok *oauth2.Token) bool {
	t.Helper()
	st, _, _ := confUserinfo(t, s, "get", tok.AccessToken)
	return st == http.StatusOK
}

func lgEndSession(b *Browser, s *Server, c Client, hint string) Page {
	q := url.Values{"post_logout_redirect_uri": {"https://rp.example/bye"}, "client_id": {c.ID}, "state": {"st"}}
	if hint != "" {
		q.Set("id_token_hint", hint)
	}
	return b.Get(s.URL + "/end_session?" + q.Encode())
}

// lgSessionWorks reports whether b's SSO session still gives a code without
// interaction.
func lgSessionWorks(t *testing.T, b *Browser, s *Server, c Client) bool {
	t.Helper()
	_, pg, ui := confSilent(t, b, s, c, AuthParams{Extra: url.Values{"prompt": {"none"}}})
	return !ui && atkHasCode(pg.Location)
}

// TestAttackLogoutRevocation: a cookie-less end_session with an old ID token
// of the user revokes nothing. A browser's own logout revokes only the
// tokens of its session: not another device's, and not an offline_access
// grant, even one made through the same session.
func TestAttackLogoutRevocation(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u := confNewUser(t, p.s)
	codes := lgRecoveryCodes(t, p.s, u)
	devA, devB := NewBrowser(t, ""), NewBrowser(t, "")
	tokA := lgLogin(t, p.s, p.a, p.rpa, devA, u, codes[0], "openid")
	offA := lgLogin(t, p.s, p.a, p.rpa, devA, u, codes[1], "openid offline_access")
	tokB := lgLogin(t, p.s, p.a, p.rpa, devB, u, codes[2], "openid")
	offB := lgLogin(t, p.s, p.a, p.rpa, devB, u, codes[3], "openid offline_access")
	oldHint := tokA.Extra("id_token").(string)

	// The attacker has seen an ID token of the user (a log, a Referer, a
	// history entry) and sends it without any cookie.
	attacker := NewBrowser(t, "127.0.0.6")
	r := lgEndSession(attacker, p.s, p.a, oldHint)
	t.Logf("cookie-less end_session with the user's ID token: %d %s", r.Status, r.Location)
	for name, tok := range map[string]*oauth2.Token{"device A": tokA, "device B": tokB, "offline A": offA, "offline B": offB} {
		if !lgAccessLive(t, p.s, tok) {
			t.Errorf("cookie-less end_session revoked the access token of %s", name)
		}
	}
	for name, tok := range map[string]*oauth2.Token{"offline A": offA, "offline B": offB} {
		if st, body := confRefresh(t, p.s, p.a, tok.RefreshToken); st != http.StatusOK {
			t.Errorf("cookie-less end_session revoked the refresh token of %s: %d %v", name, st, body)
		} else {
			tok.RefreshToken, _ = body["refresh_token"].(string)
		}
	}
	if !lgSessionWorks(t, devA, p.s, p.a) || !lgSessionWorks(t, devB, p.s, p.a) {
		t.Fatal("cookie-less end_session ended a browser's session")
	}

	// Device B signs out with the ID token of its current session.
	hintB := offB.Extra("id_token").(string)
	r = lgEndSession(devB, p.s, p.a, hintB)
	if r.Status != http.StatusFound || !strings.HasPrefix(r.Location, "https://rp.example/bye") {
		t.Fatalf("device B logout: %d %s\n%s", r.Status, r.Location, r.Body)
	}
	if lgSessionWorks(t, devB, p.s, p.a) {
		t.Error("device B's session survived its logout")
	}
	if lgAccessLive(t, p.s, tokB) {
		t.Error("device B's online access token survived its logout")
	}
	if !lgAccessLive(t, p.s, tokA) || !lgSessionWorks(t, devA, p.s, p.a) {
		t.Error("device B's logout ended device A's session or tokens")
	}
	if st, body := confRefresh(t, p.s, p.a, offB.RefreshToken); st != http.StatusOK {
		t.Errorf("front-channel logout revoked device B's offline_access grant: %d %v", st, body)
	}
}

var lgFieldRe = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// TestAttackLogoutCSRF: a bare top-level navigation to /end_session, or one
// with an ID token of an earlier session, does not sign the browser out: it
// gets a confirmation page whose form is refused without its token or from
// another site, and works once confirmed.
func TestAttackLogoutCSRF(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u := confNewUser(t, p.s)
	codes := lgRecoveryCodes(t, p.s, u)
	b := NewBrowser(t, "")
	first := lgLogin(t, p.s, p.a, p.rpa, b, u, codes[0], "openid")
	// A new full login replaces the browser's session: the first ID token
	// now names a session that no longer exists (a later auth_time, hence
	// the pause past the second boundary).
	time.Sleep(1100 * time.Millisecond)
	second := lgLogin(t, p.s, p.a, p.rpa, b, u, codes[1], "openid")

	for name, hint := range map[string]string{"no hint": "", "hint of an earlier session": first.Extra("id_token").(string)} {
		r := lgEndSession(b, p.s, p.a, hint)
		if r.Status != http.StatusOK || !strings.Contains(r.Body, `action="/end_session"`) {
			t.Errorf("%s: want the confirmation page, got %d %s", name, r.Status, r.Location)
		}
		if !lgSessionWorks(t, b, p.s, p.a) || !lgAccessLive(t, p.s, second) {
			t.Fatalf("%s: end_session signed the browser out without asking", name)
		}
	}

	page := lgEndSession(b, p.s, p.a, "")
	form := url.Values{}
	for _, m := range lgFieldRe.FindAllStringSubmatch(page.Body, -1) {
		form.Set(m[1], strings.ReplaceAll(m[2], "&amp;", "&"))
	}
	if form.Get("csrf") == "" || form.Get("confirm") == "" || form.Get("post_logout_redirect_uri") == "" {
		t.Fatalf("confirmation form fields %v", form)
	}
	post := func(v url.Values, site string) Page {
		req := atkFormRequest(p.s.URL+"/end_session", v, nil)
		req.Header.Set("Sec-Fetch-Site", site)
		pg, err := atkDo(b, req)
		if err != nil {
			t.Fatal(err)
		}
		return pg
	}
	noToken := url.Values{}
	for k, v := range form {
		noToken[k] = v
	}
	noToken.Set("csrf", "forged")
	if r := post(noToken, "same-origin"); r.Status != http.StatusForbidden {
		t.Errorf("confirmation with a forged token: %d %s, want 403", r.Status, r.Location)
	}
	if r := post(form, "cross-site"); r.Status != http.StatusForbidden {
		t.Errorf("cross-site confirmation: %d %s, want 403", r.Status, r.Location)
	}
	if !lgSessionWorks(t, b, p.s, p.a) {
		t.Fatal("a refused confirmation signed the browser out")
	}
	r := post(form, "same-origin")
	if r.Status != http.StatusFound || !strings.HasPrefix(r.Location, "https://rp.example/bye") || !strings.Contains(r.Location, "state=st") {
		t.Fatalf("confirmed logout: %d %s", r.Status, r.Location)
	}
	if lgSessionWorks(t, b, p.s, p.a) || lgAccessLive(t, p.s, second) {
		t.Error("the confirmed logout left the session or its tokens alive")
	}
}

// TestAttackLogoutLeavesNoPendingSignIn: a request completed from the
// session but not yet collected gives no code after the browser's logout.
func TestAttackLogoutLeavesNoPendingSignIn(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u := confNewUser(t, p.s)
	b := NewBrowser(t, "")
	f, code := confLogin(t, b, p.s, p.a, AuthParams{Scope: "openid"}, u, false)
	tok, err := p.rpa.Exchange(f, code)
	if err != nil {
		t.Fatal(err)
	}
	waitingURL, waiting := AuthorizeURL(p.s, p.a, AuthParams{Scope: "openid offline_access"})
	waiting.B = b
	lp := b.Get(b.Get(waitingURL).Location)
	if !strings.Contains(lp.Location, "/authorize/callback") {
		t.Fatalf("SSO: %d %s", lp.Status, lp.Location)
	}
	if r := lgEndSession(b, p.s, p.a, tok.Extra("id_token").(string)); r.Status != http.StatusFound {
		t.Fatalf("logout: %d\n%s", r.Status, r.Body)
	}
	if r := b.Get(lp.Location); atkHasCode(r.Location) {
		t.Errorf("a request completed from the ended session gave a code after the logout: %s", r.Location)
	}
}

// TestLogoutExpiredHintAsks: an expired ID token of the very session does
// not sign out without asking (the library accepts expired hints).
func TestLogoutExpiredHintAsks(t *testing.T) {
	t.Parallel()
	p := confNewProto(t, "--id-token-lifetime", "1s")
	u := confNewUser(t, p.s)
	b := NewBrowser(t, "")
	f, code := confLogin(t, b, p.s, p.a, AuthParams{Scope: "openid"}, u, false)
	tok, err := p.rpa.Exchange(f, code)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond)
	r := lgEndSession(b, p.s, p.a, tok.Extra("id_token").(string))
	if r.Status != http.StatusOK || !strings.Contains(r.Body, `action="/end_session"`) {
		t.Errorf("expired hint of the session: %d %s, want the confirmation page", r.Status, r.Location)
	}
	if !lgSessionWorks(t, b, p.s, p.a) {
		t.Error("an expired hint signed the browser out")
	}
}

// TestLogoutRedirectExactForNativeClients: a public client's loopback
// post-logout redirect URI matches exactly; another port, scheme or host is
// never followed (the library alone would allow them).
func TestLogoutRedirectExactForNativeClients(t *testing.T) {
	t.Parallel()
	s := StartServer(t, fastPolicy...)
	out := CLI(t, s.DB, "", "client", "add", "native", "--public", "--redirect-uri", "http://127.0.0.1:9000/cb",
		"--post-logout-redirect-uri", "http://127.0.0.1:9000/bye", "--json")
	if !strings.Contains(out, "native") {
		t.Fatalf("client add: %s", out)
	}
	b := NewBrowser(t, "")
	for _, uri := range []string{"http://127.0.0.1:9999/bye", "http://localhost:9000/bye", "https://127.0.0.1:9000/bye"} {
		r := b.Get(s.URL + "/end_session?" + url.Values{"client_id": {"native"}, "post_logout_redirect_uri": {uri}}.Encode())
		if strings.HasPrefix(r.Location, uri) {
			t.Errorf("logout followed the unregistered %s", uri)
		}
	}
	r := b.Get(s.URL + "/end_session?" + url.Values{"client_id": {"native"}, "post_logout_redirect_uri": {"http://127.0.0.1:9000/bye"}}.Encode())
	if r.Status != http.StatusFound || !strings.HasPrefix(r.Location, "http://127.0.0.1:9000/bye") {
		t.Errorf("the registered post-logout URI: %d %s", r.Status, r.Location)
	}
}
