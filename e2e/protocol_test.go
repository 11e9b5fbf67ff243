package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// confProto is a server with two clients registered with the defaults
// (confidential, PKCE S256 required) and a third with PKCE optional.
type confProto struct {
	s        *Server
	a, b     Client
	opt      Client
	rpa, rpb *RP
	rpopt    *RP
}

func confNewProto(t *testing.T, serverArgs ...string) *confProto {
	t.Helper()
	s := StartServer(t, append(slices.Clone(fastPolicy), serverArgs...)...)
	p := &confProto{s: s}
	p.a = AddClient(t, s.DB, "conf-a")
	p.b = AddClient(t, s.DB, "conf-b")
	p.opt = AddClient(t, s.DB, "conf-opt", "--pkce=optional")
	p.rpa, p.rpb, p.rpopt = confNewRP(t, s, p.a), confNewRP(t, s, p.b), confNewRP(t, s, p.opt)
	return p
}

// confTokens logs a new user in at client c (PKCE S256) in browser b (a
// new one when nil) and exchanges the code.
func confTokens(t *testing.T, s *Server, c Client, rp *RP, b *Browser, scope string) (User, *Flow, *oauth2.Token) {
	t.Helper()
	if b == nil {
		b = NewBrowser(t, "")
	}
	u := confNewUser(t, s)
	f, code := confLogin(t, b, s, c, AuthParams{Scope: scope}, u, false)
	tok, err := rp.Exchange(f, code)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	confCheckID(t, s, rp, tok, f, u, c)
	return u, f, tok
}

// confRefresh runs the refresh grant as c.
func confRefresh(t *testing.T, s *Server, c Client, rt string) (int, map[string]any) {
	t.Helper()
	st, body, _ := confTokenRequest(t, s, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	return st, body
}

func confWantInvalidGrant(t *testing.T, what string, st int, body map[string]any) {
	t.Helper()
	if st != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("%s: %d %v, want 400 invalid_grant", what, st, body)
	}
}

// confAuthorizeError expects /authorize to answer with an OAuth error at
// the client's redirect URI (no login page, no code).
func confAuthorizeError(t *testing.T, s *Server, c Client, p AuthParams, wantErr string) {
	t.Helper()
	u, f := AuthorizeURL(s, c, p)
	r := NewBrowser(t, "").Get(u)
	if r.Status != http.StatusFound {
		t.Fatalf("authorize: want 302 with error, got %d %q\n%s", r.Status, r.Location, r.Body)
	}
	q := confRedirectQuery(t, r.Location, c.RedirectURI)
	if q.Get("error") != wantErr || q.Get("state") != f.State || q.Has("code") {
		t.Errorf("authorize: want error=%s at the redirect URI, got %s", wantErr, r.Location)
	}
}

// TestPKCEMissingChallengeRefusedForDefaultClient: a client registered
// with the defaults must send a code_challenge (RFC 9700 §2.1.1).
func TestPKCEMissingChallengeRefusedForDefaultClient(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	confAuthorizeError(t, p.s, p.a, AuthParams{NoPKCE: true}, "invalid_request")
	// The optional client may omit it.
	NewBrowser(t, "").StartFlow(p.s, p.opt, AuthParams{NoPKCE: true})
}

// TestPKCEPlainMethodRefused: only S256; plain is refused for every client.
func TestPKCEPlainMethodRefused(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	for _, c := range []Client{p.a, p.opt} {
		for _, method := range []string{"plain", ""} {
			confAuthorizeError(t, p.s, c, AuthParams{NoPKCE: true, Extra: url.Values{
				"code_challenge": {randString() + randString()}, "code_challenge_method": {method}}}, "invalid_request")
		}
		confAuthorizeError(t, p.s, c, AuthParams{NoPKCE: true, Extra: url.Values{
			"code_challenge": {randString() + randString()}, "code_challenge_method": {"S512"}}}, "invalid_request")
	}
}

// TestPKCEWrongVerifierRefused: a verifier that does not hash to the
// challenge, or none at all, gets no tokens.
func TestPKCEWrongVerifierRefused(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	for _, verifier := range []string{"wrong-" + randString() + randString(), ""} {
		u := confNewUser(t, p.s)
		f, code := confLogin(t, NewBrowser(t, ""), p.s, p.a, AuthParams{}, u, false)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {p.a.RedirectURI}}
		if verifier != "" {
			form.Set("code_verifier", verifier)
		}
		st, body, _ := confTokenRequest(t, p.s, p.a, form)
		if st != http.StatusBadRequest || (body["error"] != "invalid_grant" && body["error"] != "invalid_request") || body["access_token"] != nil {
			t.Errorf("verifier %q: %d %v, want 400 invalid_grant", verifier, st, body)
		}
		if f.Verifier == "" {
			t.Fatal("flow without PKCE")
		}
	}
}

// TestPKCEVerifierWithoutChallengeRefused: a code_verifier for a code
// issued without a challenge is refused (PKCE downgrade, RFC 9700 §2.1.1).
func TestPKCEVerifierWithoutChallengeRefused(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u := confNewUser(t, p.s)
	_, code := confLogin(t, NewBrowser(t, ""), p.s, p.opt, AuthParams{NoPKCE: true}, u, false)
	st, body, _ := confTokenRequest(t, p.s, p.opt, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {p.opt.RedirectURI}, "code_verifier": {randString() + randString()}})
	if st != http.StatusBadRequest || body["access_token"] != nil {
		t.Errorf("verifier without challenge: %d %v, want 400", st, body)
	}
}

// TestPKCEDiscoveryListsOnlyS256.
func TestPKCEDiscoveryListsOnlyS256(t *testing.T) {
	t.Parallel()
	s := StartServer(t)
	d := confDiscovery(t, s)
	if !slices.Equal(d.CodeChallengeMethodsSupported, []string{"S256"}) {
		t.Errorf("code_challenge_methods_supported %v, want [S256]", d.CodeChallengeMethodsSupported)
	}
}

// TestRedirectURIExactMatch: the redirect URI is compared as an exact
// string; every near miss gets an error page, never a redirect. The token
// endpoint insists on the same redirect_uri as the authorization request.
func TestRedirectURIExactMatch(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	reg := p.a.RedirectURI // https://rp.example/cb/conf-a
	for _, v := range []string{
		"https://rp.example/CB/CONF-A",
		"https://rp.example/cb/conf-a/",
		"https://rp.example/cb/conf-a?x=1",
		"https://rp.example/cb/conf-a#frag",
		"https://rp.example/cb/conf-a/../conf-b",
		"https://rp.example/cb/conf-a%2F",
		"https://RP.EXAMPLE/cb/conf-a",
		"https://rp.example:8443/cb/conf-a",
		"https://evil.example/cb/conf-a",
		"https://rp.example.evil.example/cb/conf-a",
		"https://rp.example@evil.example/cb/conf-a",
		"http://rp.example/cb/conf-a",
		p.b.RedirectURI, // another client's
		"",
	} {
		for _, extra := range []url.Values{nil, {"prompt": {"none"}}} {
			u, _ := AuthorizeURL(p.s, p.a, AuthParams{Extra: extra})
			au, _ := url.Parse(u)
			q := au.Query()
			q.Set("redirect_uri", v)
			au.RawQuery = q.Encode()
			r := NewBrowser(t, "").Get(au.String())
			confWantErrorPage(t, r, "redirect_uri "+v)
		}
	}

	// Token endpoint: a code issued for reg is not redeemed for a variant.
	u := confNewUser(t, p.s)
	f, code := confLogin(t, NewBrowser(t, ""), p.s, p.a, AuthParams{}, u, false)
	st, body, _ := confTokenRequest(t, p.s, p.a, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {reg + "/"}, "code_verifier": {f.Verifier}})
	confWantInvalidGrant(t, "token request with another redirect_uri", st, body)
}

// TestCodeSingleUseConcurrent: 8 simultaneous redemptions of one code
// over HTTP yield at most one token response, and no token that works
// afterwards: the others are reuse, which revokes whatever the code gave
// (RFC 6749 §4.1.2), also when the winner stores its tokens after a
// loser's revocation (its insert is then refused: invalid_grant).
func TestCodeSingleUseConcurrent(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u := confNewUser(t, p.s)
	f, code := confLogin(t, NewBrowser(t, ""), p.s, p.a, AuthParams{}, u, false)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {p.a.RedirectURI},
		"code_verifier": {f.Verifier}}.Encode()
	statuses, bodies := confConcurrent(t, 8, p.s.URL+"/oauth/token", p.a, form)
	wins := 0
	for i, st := range statuses {
		switch {
		case st == http.StatusOK && bodies[i]["access_token"] != nil:
			wins++
		case st == http.StatusBadRequest && bodies[i]["error"] == "invalid_grant":
		default:
			t.Errorf("redemption %d: %d %v", i, st, bodies[i])
		}
	}
	if wins > 1 {
		t.Errorf("%d of 8 concurrent redemptions succeeded, want at most 1", wins)
	}
	for i, b := range bodies {
		at, _ := b["access_token"].(string)
		if at == "" {
			continue
		}
		st, _, _ := confDo(t, http.MethodGet, p.s.URL+"/userinfo", nil, map[string]string{"Authorization": "Bearer " + at})
		if st != http.StatusUnauthorized {
			t.Errorf("redemption %d's access token after the reuse: userinfo %d, want 401", i, st)
		}
	}
}

// confConcurrent posts form to u as c from n goroutines released at once.
func confConcurrent(t *testing.T, n int, u string, c Client, form string) ([]int, []map[string]any) {
	t.Helper()
	statuses := make([]int, n)
	bodies := make([]map[string]any, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st, b, _, err := confDoErr(http.MethodPost, u, strings.NewReader(form),
				map[string]string{"Content-Type": "application/x-www-form-urlencoded", "basic": c.ID + ":" + c.Secret})
			statuses[i], errs[i] = st, err
			bodies[i] = map[string]any{}
			_ = json.Unmarshal(b, &bodies[i])
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	return statuses, bodies
}

// TestOneCodePerAuthRequest: calling the callback again after the code
// was issued mints no second code; the first stays redeemable.
func TestOneCodePerAuthRequest(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u := confNewUser(t, p.s)
	b := NewBrowser(t, "")
	f, code := confLogin(t, b, p.s, p.a, AuthParams{}, u, false)
	id := f.Form.Get("id")
	if id == "" {
		t.Fatal("no auth request id")
	}
	for i := 0; i < 3; i++ {
		r := b.Get(p.s.URL + "/authorize/callback?id=" + url.QueryEscape(id))
		if r.Status >= 500 {
			t.Errorf("repeated callback: status %d", r.Status)
		}
		if strings.Contains(r.Location, "code=") || strings.Contains(r.Body, "code=") {
			t.Fatalf("repeated callback issued another code: %d %s", r.Status, r.Location)
		}
	}
	tok, err := p.rpa.Exchange(f, code)
	if err != nil {
		t.Fatalf("the first code no longer works: %v", err)
	}
	confCheckID(t, p.s, p.rpa, tok, f, u, p.a)
}

// TestRefreshRotationAndReuseDetection: RT1 → RT2; replaying RT1 fails
// and revokes the family, so RT2 and its access token die too; the
// refreshed ID token keeps iss/sub/aud, amr and auth_time.
func TestRefreshRotationAndReuseDetection(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u, f, tok := confTokens(t, p.s, p.a, p.rpa, nil, "openid profile offline_access")
	cl := confCheckID(t, p.s, p.rpa, tok, f, u, p.a)
	rt1 := tok.RefreshToken
	if rt1 == "" {
		t.Fatal("no refresh token")
	}
	st, body := confRefresh(t, p.s, p.a, rt1)
	if st != http.StatusOK {
		t.Fatalf("refresh: %d %v", st, body)
	}
	rt2, _ := body["refresh_token"].(string)
	at2, _ := body["access_token"].(string)
	if rt2 == "" || rt2 == rt1 || at2 == "" || at2 == tok.AccessToken {
		t.Fatalf("refresh did not rotate: %v", body)
	}
	tok2 := (&oauth2.Token{AccessToken: at2}).WithExtra(body)
	cl2 := confCheckID(t, p.s, p.rpa, tok2, nil, u, p.a)
	if cl2.Iss != cl.Iss || cl2.Sub != cl.Sub || !slices.Equal(confAud(cl2), confAud(cl)) {
		t.Errorf("refreshed ID token iss/sub/aud changed: %+v vs %+v", cl2, cl)
	}
	if !slices.Equal(cl2.AMR, []string{"pwd", "otp", "mfa"}) || cl2.AuthTime != cl.AuthTime {
		t.Errorf("refreshed ID token amr %v auth_time %d, want %v %d", cl2.AMR, cl2.AuthTime, cl.AMR, cl.AuthTime)
	}
	if st, _, _ := confUserinfo(t, p.s, "get", at2); st != http.StatusOK {
		t.Fatalf("userinfo with the refreshed access token: %d", st)
	}

	st, body = confRefresh(t, p.s, p.a, rt1)
	confWantInvalidGrant(t, "replayed RT1", st, body)
	st, body = confRefresh(t, p.s, p.a, rt2)
	confWantInvalidGrant(t, "RT2 after RT1 was replayed", st, body)
	if st, _, _ := confUserinfo(t, p.s, "get", at2); st != http.StatusUnauthorized {
		t.Errorf("access token of the revoked family: userinfo %d, want 401", st)
	}
	// Another client cannot use the refresh token either.
	_, _, tokB := confTokens(t, p.s, p.a, p.rpa, nil, "openid offline_access")
	st, body = confRefresh(t, p.s, p.b, tokB.RefreshToken)
	if st == http.StatusOK {
		t.Errorf("client b refreshed client a's token: %v", body)
	}
}

// TestRefreshConcurrentSingleSuccess: 8 simultaneous refreshes with one
// refresh token: exactly one succeeds; the others count as reuse, which
// revokes the family, the winner's new token included.
func TestRefreshConcurrentSingleSuccess(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	_, _, tok := confTokens(t, p.s, p.a, p.rpa, nil, "openid offline_access")
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}.Encode()
	statuses, bodies := confConcurrent(t, 8, p.s.URL+"/oauth/token", p.a, form)
	wins := 0
	var winnerRT string
	for i, st := range statuses {
		switch {
		case st == http.StatusOK && bodies[i]["refresh_token"] != nil:
			wins++
			winnerRT, _ = bodies[i]["refresh_token"].(string)
		case st == http.StatusBadRequest && bodies[i]["error"] == "invalid_grant":
		default:
			t.Errorf("refresh %d: %d %v", i, st, bodies[i])
		}
	}
	if wins != 1 {
		t.Fatalf("%d of 8 concurrent refreshes succeeded, want exactly 1", wins)
	}
	st, body := confRefresh(t, p.s, p.a, winnerRT)
	confWantInvalidGrant(t, "the winner's refresh token after concurrent reuse", st, body)
}

// TestRevokeRefreshToken: after revocation the refresh token and the
// access token issued with it are dead.
func TestRevokeRefreshToken(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	for _, hint := range []string{"refresh_token", ""} {
		_, _, tok := confTokens(t, p.s, p.a, p.rpa, nil, "openid offline_access")
		if st := confRevoke(t, p.s, p.a, tok.RefreshToken, hint); st != http.StatusOK {
			t.Fatalf("revoke (hint %q): %d", hint, st)
		}
		st, body := confRefresh(t, p.s, p.a, tok.RefreshToken)
		confWantInvalidGrant(t, "refresh after revocation", st, body)
		if st, _, _ := confUserinfo(t, p.s, "get", tok.AccessToken); st != http.StatusUnauthorized {
			t.Errorf("access token of a revoked refresh token: userinfo %d, want 401", st)
		}
	}
	// RFC 7009 §2.2: an unknown token is not an error.
	if st := confRevoke(t, p.s, p.a, "not-a-token", ""); st != http.StatusOK {
		t.Errorf("revoke unknown token: %d, want 200", st)
	}
	// Client authentication is required.
	if st := confRevoke(t, p.s, Client{ID: p.a.ID, Secret: "wrong"}, "x", ""); st != http.StatusUnauthorized && st != http.StatusBadRequest {
		t.Errorf("revoke with a wrong secret: %d, want 401", st)
	}
}

// TestRevokeAccessToken: a revoked access token is refused at userinfo
// (401) and inactive at introspection.
func TestRevokeAccessToken(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	_, _, tok := confTokens(t, p.s, p.a, p.rpa, nil, "openid profile")
	if st, _, _ := confUserinfo(t, p.s, "get", tok.AccessToken); st != http.StatusOK {
		t.Fatalf("userinfo before revocation: %d", st)
	}
	if st := confRevoke(t, p.s, p.a, tok.AccessToken, "access_token"); st != http.StatusOK {
		t.Fatalf("revoke: %d", st)
	}
	st, body, h := confUserinfo(t, p.s, "get", tok.AccessToken)
	if st != http.StatusUnauthorized || body["sub"] != nil {
		t.Errorf("userinfo with a revoked token: %d %v, want 401", st, body)
	}
	if !strings.Contains(h.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("WWW-Authenticate %q lacks invalid_token (RFC 6750 §3.1)", h.Get("WWW-Authenticate"))
	}
	if in := confIntrospect(t, p.s, p.a, tok.AccessToken); in["active"] != false {
		t.Errorf("introspection of a revoked token: %v", in)
	}
}

// TestRevokeOtherClientsTokenRefused: client b cannot revoke tokens of
// client a (RFC 7009 §2.1).
func TestRevokeOtherClientsTokenRefused(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	_, _, tok := confTokens(t, p.s, p.a, p.rpa, nil, "openid offline_access")
	for _, tc := range []struct{ token, hint string }{
		{tok.AccessToken, "access_token"}, {tok.AccessToken, ""},
		{tok.RefreshToken, "refresh_token"}, {tok.RefreshToken, ""},
	} {
		if st := confRevoke(t, p.s, p.b, tc.token, tc.hint); st >= 500 {
			t.Errorf("foreign revoke: status %d", st)
		}
	}
	if st, _, _ := confUserinfo(t, p.s, "get", tok.AccessToken); st != http.StatusOK {
		t.Errorf("client b revoked client a's access token: userinfo %d", st)
	}
	if st, body := confRefresh(t, p.s, p.a, tok.RefreshToken); st != http.StatusOK {
		t.Errorf("client b revoked client a's refresh token: %d %v", st, body)
	}
}

// TestIntrospection: active only for a live token asked about by the
// client it was issued to.
func TestIntrospection(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u, _, tok := confTokens(t, p.s, p.a, p.rpa, nil, "openid profile")
	in := confIntrospect(t, p.s, p.a, tok.AccessToken)
	if in["active"] != true || in["sub"] != u.ID || in["client_id"] != p.a.ID {
		t.Errorf("introspection by the owner: %v", in)
	}
	if exp, _ := in["exp"].(float64); int64(exp) <= time.Now().Unix() {
		t.Errorf("introspection exp %v not in the future", in["exp"])
	}
	if sc, _ := in["scope"].(string); !slices.Contains(strings.Fields(sc), "openid") {
		t.Errorf("introspection scope %v", in["scope"])
	}
	if in := confIntrospect(t, p.s, p.b, tok.AccessToken); in["active"] != false || in["sub"] != nil {
		t.Errorf("introspection by another client: %v", in)
	}
	if in := confIntrospect(t, p.s, p.a, "garbage"); in["active"] != false {
		t.Errorf("introspection of garbage: %v", in)
	}
	// Client authentication is required.
	for _, c := range []Client{{}, {ID: p.a.ID, Secret: "wrong"}, {ID: "nobody", Secret: "x"}} {
		st, m, _ := confForm(t, p.s.URL+"/oauth/introspect", c, url.Values{"token": {tok.AccessToken}})
		if st != http.StatusUnauthorized || m["active"] == true {
			t.Errorf("introspection as %q/%q: %d %v, want 401", c.ID, c.Secret, st, m)
		}
	}
	if st := confRevoke(t, p.s, p.a, tok.AccessToken, ""); st != http.StatusOK {
		t.Fatalf("revoke: %d", st)
	}
	if in := confIntrospect(t, p.s, p.a, tok.AccessToken); in["active"] != false {
		t.Errorf("introspection after revocation: %v", in)
	}
}

// TestUserinfoRejectsExpiredAndRevokedTokens uses a 2 s access-token
// lifetime.
func TestUserinfoRejectsExpiredAndRevokedTokens(t *testing.T) {
	t.Parallel()
	p := confNewProto(t, "--access-token-lifetime", "2s")
	_, _, tok := confTokens(t, p.s, p.a, p.rpa, nil, "openid")
	_, _, tok2 := confTokens(t, p.s, p.a, p.rpa, nil, "openid")
	if st, _, _ := confUserinfo(t, p.s, "get", tok.AccessToken); st != http.StatusOK {
		t.Fatalf("userinfo with a fresh token: %d", st)
	}
	if st := confRevoke(t, p.s, p.a, tok2.AccessToken, ""); st != http.StatusOK {
		t.Fatal("revoke failed")
	}
	for _, mode := range []string{"get", "post-header", "post-body"} {
		if st, _, _ := confUserinfo(t, p.s, mode, tok2.AccessToken); st != http.StatusUnauthorized {
			t.Errorf("userinfo (%s) with a revoked token: %d, want 401", mode, st)
		}
	}
	time.Sleep(3 * time.Second)
	for _, mode := range []string{"get", "post-header", "post-body"} {
		if st, _, _ := confUserinfo(t, p.s, mode, tok.AccessToken); st != http.StatusUnauthorized {
			t.Errorf("userinfo (%s) with an expired token: %d, want 401", mode, st)
		}
	}
	if in := confIntrospect(t, p.s, p.a, tok.AccessToken); in["active"] != false {
		t.Errorf("introspection of an expired token: %v", in)
	}
	st, _, h := confUserinfo(t, p.s, "get", "")
	if st != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("userinfo without a token: %d %q", st, h.Get("WWW-Authenticate"))
	}
}

// TestNoStoreOnTokenUserinfoIntrospection: RFC 6749 §5.1.
func TestNoStoreOnTokenUserinfoIntrospection(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u := confNewUser(t, p.s)
	f, code := confLogin(t, NewBrowser(t, ""), p.s, p.a, AuthParams{}, u, false)
	st, body, h := confTokenRequest(t, p.s, p.a, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {p.a.RedirectURI}, "code_verifier": {f.Verifier}})
	if st != http.StatusOK {
		t.Fatalf("token: %d %v", st, body)
	}
	at, _ := body["access_token"].(string)
	check := func(what string, h http.Header) {
		t.Helper()
		if !strings.Contains(h.Get("Cache-Control"), "no-store") {
			t.Errorf("%s: Cache-Control %q lacks no-store", what, h.Get("Cache-Control"))
		}
	}
	check("token response", h)
	if h.Get("Pragma") != "no-cache" {
		t.Errorf("token response: Pragma %q", h.Get("Pragma"))
	}
	_, _, h = confTokenRequest(t, p.s, p.a, url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}})
	check("token error response", h)
	_, _, h = confUserinfo(t, p.s, "get", at)
	check("userinfo", h)
	_, _, h = confUserinfo(t, p.s, "get", "garbage")
	check("userinfo error", h)
	_, _, h = confForm(t, p.s.URL+"/oauth/introspect", p.a, url.Values{"token": {at}})
	check("introspection", h)
}

// confPreflight sends a CORS preflight (or, with method "", a simple GET)
// from origin.
func confPreflight(t *testing.T, u, origin string, preflight bool) http.Header {
	t.Helper()
	method := http.MethodGet
	hdr := map[string]string{"Origin": origin}
	if preflight {
		method = http.MethodOptions
		hdr["Access-Control-Request-Method"] = "POST"
		hdr["Access-Control-Request-Headers"] = "authorization, content-type"
	}
	_, _, h := confDo(t, method, u, nil, hdr)
	return h
}

// TestCORSUnregisteredOriginRefused: no Access-Control-Allow-Origin for
// foreign origins, and never Allow-Credentials.
func TestCORSUnregisteredOriginRefused(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	for _, path := range []string{"/oauth/token", "/userinfo", "/oauth/introspect", "/revoke", "/keys", "/authorize", "/authorize/callback", "/end_session"} {
		for _, origin := range []string{"https://evil.example", "null", "https://rp.example.evil.example", "http://rp.example"} {
			for _, pre := range []bool{true, false} {
				h := confPreflight(t, p.s.URL+path, origin, pre)
				if v := h.Get("Access-Control-Allow-Origin"); v != "" {
					t.Errorf("%s from %s (preflight %t): Access-Control-Allow-Origin %q", path, origin, pre, v)
				}
				if h.Get("Access-Control-Allow-Credentials") != "" {
					t.Errorf("%s from %s: Access-Control-Allow-Credentials set", path, origin)
				}
			}
		}
	}
}

// TestCORSRegisteredOriginOnlyOnAPI: a client's origin may call the token
// endpoint from a browser, but not the browser-facing endpoints.
func TestCORSRegisteredOriginOnlyOnAPI(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	const origin = "https://rp.example" // origin of the clients' redirect URIs
	for _, pre := range []bool{true, false} {
		h := confPreflight(t, p.s.URL+"/oauth/token", origin, pre)
		if h.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("/oauth/token from %s (preflight %t): Access-Control-Allow-Origin %q", origin, pre, h.Get("Access-Control-Allow-Origin"))
		}
		if h.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("/oauth/token: Access-Control-Allow-Credentials %q", h.Get("Access-Control-Allow-Credentials"))
		}
		for _, path := range []string{"/authorize", "/authorize/callback", "/end_session"} {
			h := confPreflight(t, p.s.URL+path, origin, pre)
			if v := h.Get("Access-Control-Allow-Origin"); v != "" {
				t.Errorf("%s from a client origin (preflight %t): Access-Control-Allow-Origin %q", path, pre, v)
			}
		}
	}
}

// TestJWKSPublicRSAKeysOnly: every key has a kid, is RSA and carries no
// private member; the ID token's kid is published.
func TestJWKSPublicRSAKeysOnly(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	d := confDiscovery(t, p.s)
	if d.JWKSURI != p.s.URL+"/keys" {
		t.Errorf("jwks_uri %q", d.JWKSURI)
	}
	keys := confJWKS(t, d.JWKSURI)
	if len(keys) == 0 {
		t.Fatal("JWKS is empty")
	}
	kids := map[string]bool{}
	for _, k := range keys {
		kid, _ := k["kid"].(string)
		if kid == "" || kids[kid] {
			t.Errorf("key without a unique kid: %v", k)
		}
		kids[kid] = true
		if k["kty"] != "RSA" || k["n"] == nil || k["e"] == nil {
			t.Errorf("key %s: kty %v, want RSA with n and e", kid, k["kty"])
		}
		if use, ok := k["use"]; ok && use != "sig" {
			t.Errorf("key %s: use %v", kid, use)
		}
		if alg, ok := k["alg"]; ok && alg != "RS256" {
			t.Errorf("key %s: alg %v", kid, alg)
		}
		for _, priv := range []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth"} {
			if _, ok := k[priv]; ok {
				t.Errorf("key %s publishes private member %q", kid, priv)
			}
		}
	}
	_, _, tok := confTokens(t, p.s, p.a, p.rpa, nil, "openid")
	hdr := confJWTHeader(t, tok.Extra("id_token").(string))
	if hdr["alg"] != "RS256" || !kids[hdr["kid"].(string)] {
		t.Errorf("ID token header %v: want RS256 and a kid from JWKS %v", hdr, kids)
	}
}

func confJWKS(t testing.TB, u string) []map[string]any {
	t.Helper()
	st, body, _ := confDo(t, http.MethodGet, u, nil, nil)
	if st != http.StatusOK {
		t.Fatalf("JWKS: %d", st)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	return set.Keys
}

func confJWTHeader(t testing.TB, raw string) map[string]any {
	t.Helper()
	h, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDiscoveryTruthful: the issuer is exact, every endpoint is on it, no
// "none" algorithm, and only the grants and response types we serve.
func TestDiscoveryTruthful(t *testing.T) {
	t.Parallel()
	s := StartServer(t)
	d := confDiscovery(t, s)
	if d.Issuer != s.URL || strings.HasSuffix(d.Issuer, "/") {
		t.Errorf("issuer %q, want exactly %q", d.Issuer, s.URL)
	}
	for name, ep := range map[string]string{"authorization": d.AuthorizationEndpoint, "token": d.TokenEndpoint,
		"userinfo": d.UserinfoEndpoint, "introspection": d.IntrospectionEndpoint, "revocation": d.RevocationEndpoint,
		"end_session": d.EndSessionEndpoint, "jwks": d.JWKSURI} {
		if !strings.HasPrefix(ep, s.URL+"/") {
			t.Errorf("%s endpoint %q not under the issuer", name, ep)
		}
	}
	if slices.ContainsFunc(d.IDTokenSigningAlgValuesSupported, func(a string) bool { return strings.EqualFold(a, "none") }) ||
		!slices.Contains(d.IDTokenSigningAlgValuesSupported, "RS256") {
		t.Errorf("id_token_signing_alg_values_supported %v", d.IDTokenSigningAlgValuesSupported)
	}
	for k, v := range d.Raw {
		if strings.HasSuffix(k, "_alg_values_supported") {
			if list, ok := v.([]any); ok && slices.ContainsFunc(list, func(a any) bool { return a == "none" }) {
				t.Errorf("%s advertises none: %v", k, v)
			}
		}
	}
	for _, g := range []string{"urn:ietf:params:oauth:grant-type:jwt-bearer", "implicit", "client_credentials",
		"urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:token-exchange", "password"} {
		if slices.Contains(d.GrantTypesSupported, g) {
			t.Errorf("grant_types_supported %v lists %q", d.GrantTypesSupported, g)
		}
	}
	if !slices.Contains(d.GrantTypesSupported, "authorization_code") || !slices.Contains(d.GrantTypesSupported, "refresh_token") {
		t.Errorf("grant_types_supported %v", d.GrantTypesSupported)
	}
	if !slices.Equal(d.ResponseTypesSupported, []string{"code"}) {
		t.Errorf("response_types_supported %v, want [code]", d.ResponseTypesSupported)
	}
	if _, ok := d.Raw["device_authorization_endpoint"]; ok && d.Raw["device_authorization_endpoint"] != "" {
		t.Errorf("device_authorization_endpoint advertised: %v", d.Raw["device_authorization_endpoint"])
	}
}

// TestUnsupportedGrantsRefused: the JWT-bearer grant (always on in the
// library) and the other grants we do not offer are refused, and the
// implicit and hybrid response types are refused at /authorize.
func TestUnsupportedGrantsRefused(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u := confNewUser(t, p.s)
	assertion := confUnsignedJWT(map[string]any{"iss": p.a.ID, "sub": u.ID, "aud": p.s.URL,
		"exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix()})
	for _, form := range []url.Values{
		{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}, "scope": {"openid"}},
		{"grant_type": {"client_credentials"}, "scope": {"openid"}},
		{"grant_type": {"password"}, "username": {u.Name}, "password": {u.Password}, "scope": {"openid"}},
		{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {"x"}},
		{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {"x"},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}},
	} {
		for _, c := range []Client{p.a, {}} {
			st, body, _ := confTokenRequest(t, p.s, c, form)
			if st != http.StatusBadRequest && st != http.StatusUnauthorized || body["access_token"] != nil {
				t.Errorf("grant %s (client %q): %d %v, want 400", form.Get("grant_type"), c.ID, st, body)
			}
			if c.ID != "" && body["error"] != "unsupported_grant_type" {
				t.Errorf("grant %s: error %v, want unsupported_grant_type", form.Get("grant_type"), body["error"])
			}
		}
	}
	for _, rt := range []string{"token", "id_token", "id_token token", "code id_token", "code token"} {
		au, f := AuthorizeURL(p.s, p.a, AuthParams{})
		pu, _ := url.Parse(au)
		q := pu.Query()
		q.Set("response_type", rt)
		pu.RawQuery = q.Encode()
		r := NewBrowser(t, "").Get(pu.String())
		if r.Status >= 500 || strings.Contains(r.Location, "/login/") {
			t.Errorf("response_type %q: %d %s, want an error", rt, r.Status, r.Location)
			continue
		}
		if strings.Contains(r.Location, "access_token=") || strings.Contains(r.Location, "id_token=") {
			t.Errorf("response_type %q leaked a token: %s", rt, r.Location)
		}
		if r.Location != "" {
			lu, _ := url.Parse(r.Location)
			params := lu.Query()
			if lu.Fragment != "" {
				params, _ = url.ParseQuery(lu.Fragment)
			}
			if params.Get("error") == "" || params.Get("state") != f.State {
				t.Errorf("response_type %q: redirect without error/state: %s", rt, r.Location)
			}
		}
	}
}

// TestMalformedRequestsNever500: garbage, oversized, non-UTF-8 and
// incomplete requests on every endpoint get a 4xx (or a handled answer),
// never a 5xx, and the server stays up.
func TestMalformedRequestsNever500(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	s := p.s
	big := strings.Repeat("a", 100<<10)
	bigForm := "grant_type=authorization_code&code=" + big
	garbage := "\x00\x01\x02\xff\xfe%%%&&==\r\n"
	badUTF8 := "client_id=%ff%fe&token=%c3%28&redirect_uri=%e2%82&grant_type=authorization_code&code=%80"
	form := "application/x-www-form-urlencoded"
	basicA := p.a.ID + ":" + p.a.Secret
	authz := "/authorize?client_id=" + p.a.ID + "&redirect_uri=" + url.QueryEscape(p.a.RedirectURI) + "&response_type=code&scope=openid&code_challenge=" + strings.Repeat("A", 43) + "&code_challenge_method=S256"
	type req struct {
		method, path, body, ctype, basic string
		hdr                              map[string]string
	}
	cases := []req{
		{method: "GET", path: "/authorize"},
		{method: "GET", path: "/authorize?%zz=%zz"},
		{method: "GET", path: "/authorize?client_id=%ff%fe&redirect_uri=%c3%28&response_type=code&scope=openid"},
		{method: "GET", path: "/authorize?client_id=nobody&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid"},
		{method: "GET", path: "/authorize?client_id=" + p.a.ID},
		{method: "GET", path: authz + "&max_age=abc"},
		{method: "GET", path: authz + "&max_age=-1"},
		{method: "GET", path: authz + "&prompt=none%20login"},
		{method: "GET", path: authz + "&prompt=bogus"},
		{method: "GET", path: authz + "&id_token_hint=garbage"},
		{method: "GET", path: authz + "&id_token_hint=" + confUnsignedJWT(map[string]any{"sub": "x", "iss": s.URL})},
		{method: "GET", path: authz + "&request=garbage"},
		{method: "GET", path: authz + "&request_uri=https%3A%2F%2Fevil.example%2Fr"},
		{method: "GET", path: authz + "&response_mode=bogus"},
		{method: "GET", path: authz + "&ui_locales=%ff"},
		{method: "GET", path: authz + "&claims=%7Bnot-json"},
		{method: "GET", path: strings.Replace(authz, "scope=openid", "scope=", 1)},
		{method: "GET", path: authz + "&" + strings.Repeat("x", 6000) + "=1"},
		{method: "POST", path: "/authorize", body: garbage, ctype: form},
		{method: "POST", path: "/authorize", body: big, ctype: form},
		{method: "POST", path: "/authorize", body: badUTF8, ctype: form},
		{method: "GET", path: "/authorize/callback"},
		{method: "GET", path: "/authorize/callback?id=garbage"},
		{method: "GET", path: "/authorize/callback?id=%ff%fe"},
		{method: "GET", path: "/authorize/callback?%zz"},
		{method: "POST", path: "/oauth/token"},
		{method: "POST", path: "/oauth/token", ctype: form},
		{method: "POST", path: "/oauth/token", body: garbage, ctype: form, basic: basicA},
		{method: "POST", path: "/oauth/token", body: bigForm, ctype: form, basic: basicA},
		{method: "POST", path: "/oauth/token", body: badUTF8, ctype: form, basic: basicA},
		{method: "POST", path: "/oauth/token", body: "grant_type=authorization_code", ctype: form, basic: basicA},
		{method: "POST", path: "/oauth/token", body: "grant_type=authorization_code&code=garbage", ctype: form, basic: basicA},
		{method: "POST", path: "/oauth/token", body: "grant_type=refresh_token", ctype: form, basic: basicA},
		{method: "POST", path: "/oauth/token", body: "grant_type=refresh_token&refresh_token=garbage", ctype: form, basic: basicA},
		{method: "POST", path: "/oauth/token", body: "grant_type=bogus", ctype: form, basic: basicA},
		{method: "POST", path: "/oauth/token", body: "grant_type=refresh_token&refresh_token=x", ctype: form, basic: "nobody:secret"},
		{method: "POST", path: "/oauth/token", body: "grant_type=refresh_token&refresh_token=x&client_id=nobody", ctype: form},
		{method: "POST", path: "/oauth/token", body: "grant_type=authorization_code&code=x", ctype: form, basic: "nobody:secret"},
		{method: "POST", path: "/oauth/token", body: "grant_type=authorization_code&code=x&client_id=nobody&client_secret=x", ctype: form},
		{method: "POST", path: "/oauth/token", body: "grant_type=authorization_code&code=x&client_id=" + p.a.ID, ctype: form},
		{method: "POST", path: "/oauth/token", body: "grant_type=refresh_token&refresh_token=x&client_id=" + p.a.ID + "&client_secret=" + p.a.Secret, ctype: form, basic: basicA},
		{method: "POST", path: "/oauth/token", body: `{"grant_type":"authorization_code"}`, ctype: "application/json", basic: basicA},
		{method: "POST", path: "/oauth/token", body: "grant_type=authorization_code&code=x", ctype: "multipart/form-data; boundary=zz", basic: basicA},
		{method: "POST", path: "/oauth/token", body: "grant_type=authorization_code", ctype: form, hdr: map[string]string{"Authorization": "Basic !!!"}},
		{method: "POST", path: "/oauth/token", body: "grant_type=authorization_code", ctype: form, hdr: map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("%zz:%zz"))}},
		{method: "GET", path: "/oauth/token"},
		{method: "GET", path: "/userinfo"},
		{method: "GET", path: "/userinfo", hdr: map[string]string{"Authorization": "Bearer "}},
		{method: "GET", path: "/userinfo", hdr: map[string]string{"Authorization": "Bearer garbage"}},
		{method: "GET", path: "/userinfo", hdr: map[string]string{"Authorization": "Bearer " + strings.Repeat("A", 4000)}},
		{method: "GET", path: "/userinfo", hdr: map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(basicA))}},
		{method: "POST", path: "/userinfo", body: garbage, ctype: form},
		{method: "POST", path: "/userinfo", body: "access_token=" + big, ctype: form},
		{method: "POST", path: "/userinfo", body: badUTF8 + "&access_token=%ff", ctype: form},
		{method: "POST", path: "/oauth/introspect"},
		{method: "POST", path: "/oauth/introspect", body: "token=x", ctype: form, basic: "nobody:x"},
		{method: "POST", path: "/oauth/introspect", body: "", ctype: form, basic: basicA},
		{method: "POST", path: "/oauth/introspect", body: garbage, ctype: form, basic: basicA},
		{method: "POST", path: "/oauth/introspect", body: "token=" + big, ctype: form, basic: basicA},
		{method: "POST", path: "/oauth/introspect", body: badUTF8, ctype: form, basic: basicA},
		{method: "POST", path: "/oauth/introspect", body: "token=x&client_id=" + p.a.ID + "&client_secret=" + p.a.Secret, ctype: form},
		{method: "POST", path: "/revoke"},
		{method: "POST", path: "/revoke", body: "token=x", ctype: form, basic: "nobody:x"},
		{method: "POST", path: "/revoke", body: "token=x", ctype: form},
		{method: "POST", path: "/revoke", body: "", ctype: form, basic: basicA},
		{method: "POST", path: "/revoke", body: garbage, ctype: form, basic: basicA},
		{method: "POST", path: "/revoke", body: "token=" + big, ctype: form, basic: basicA},
		{method: "POST", path: "/revoke", body: badUTF8, ctype: form, basic: basicA},
		{method: "POST", path: "/revoke", body: "token=x&token_type_hint=bogus", ctype: form, basic: basicA},
		{method: "POST", path: "/revoke", body: "token=x&client_id=nobody", ctype: form},
		{method: "GET", path: "/end_session"},
		{method: "GET", path: "/end_session?%zz"},
		{method: "GET", path: "/end_session?id_token_hint=garbage"},
		{method: "GET", path: "/end_session?id_token_hint=" + confUnsignedJWT(map[string]any{"sub": "x", "iss": s.URL, "aud": p.a.ID})},
		{method: "GET", path: "/end_session?client_id=nobody"},
		{method: "GET", path: "/end_session?client_id=nobody&post_logout_redirect_uri=https%3A%2F%2Fevil.example"},
		{method: "GET", path: "/end_session?client_id=%ff%fe&state=%c3%28"},
		{method: "GET", path: "/end_session?post_logout_redirect_uri=%zz"},
		{method: "POST", path: "/end_session", body: garbage, ctype: form},
		{method: "POST", path: "/end_session", body: big, ctype: form},
		{method: "POST", path: "/keys", body: garbage, ctype: form},
		{method: "GET", path: "/keys?%zz"},
		{method: "POST", path: "/.well-known/openid-configuration", body: garbage, ctype: form},
		{method: "GET", path: "/login/"},
		{method: "GET", path: "/login/?id=garbage"},
		{method: "GET", path: "/login/?id=%ff%fe"},
		{method: "GET", path: "/login/?%zz"},
		{method: "POST", path: "/login/password", body: garbage, ctype: form, hdr: map[string]string{"Sec-Fetch-Site": "same-origin"}},
		{method: "POST", path: "/login/password", body: "id=x&username=" + big, ctype: form, hdr: map[string]string{"Sec-Fetch-Site": "same-origin"}},
		{method: "POST", path: "/login/password", body: badUTF8, ctype: form, hdr: map[string]string{"Sec-Fetch-Site": "same-origin"}},
		{method: "POST", path: "/login/totp", body: garbage, ctype: form, hdr: map[string]string{"Sec-Fetch-Site": "same-origin"}},
		{method: "POST", path: "/login/totp", body: "id=x&code=" + big, ctype: form, hdr: map[string]string{"Sec-Fetch-Site": "same-origin"}},
		{method: "GET", path: "/nope"},
		{method: "DELETE", path: "/oauth/token"},
		{method: "PUT", path: "/userinfo", body: garbage},
		{method: "GET", path: "/healthz?%zz"},
	}
	for _, c := range cases {
		hdr := map[string]string{}
		for k, v := range c.hdr {
			hdr[k] = v
		}
		if c.ctype != "" {
			hdr["Content-Type"] = c.ctype
		}
		if c.basic != "" {
			hdr["basic"] = c.basic
		}
		var body *strings.Reader
		if c.body != "" || c.method == "POST" {
			body = strings.NewReader(c.body)
		}
		var st int
		var b []byte
		var err error
		if body != nil {
			st, b, _, err = confDoErr(c.method, s.URL+c.path, body, hdr)
		} else {
			st, b, _, err = confDoErr(c.method, s.URL+c.path, nil, hdr)
		}
		name := c.method + " " + c.path
		if len(name) > 120 {
			name = name[:120] + "…"
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if st >= 500 || st == 0 {
			t.Errorf("%s (body %d bytes): status %d: %.200s", name, len(c.body), st, b)
		}
		if bytes.Contains(b, []byte("goroutine ")) || bytes.Contains(b, []byte(".go:")) {
			t.Errorf("%s: body leaks internals: %.300s", name, b)
		}
	}
	if st, _, _ := confDo(t, http.MethodGet, s.URL+"/healthz", nil, nil); st != http.StatusOK {
		t.Errorf("healthz after malformed requests: %d", st)
	}
	if strings.Contains(s.Stderr(), "panic") {
		t.Errorf("server log shows a panic:\n%s", s.Stderr())
	}
}

// TestEndSessionLogsOutAndRevokes: RP-initiated logout with id_token_hint
// and a registered post_logout_redirect_uri redirects there with state,
// ends the SSO session (also for a replayed cookie) and revokes the tokens
// issued through that session (offline_access grants are kept: see
// TestAttackLogoutRevocation).
func TestEndSessionLogsOutAndRevokes(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	b := NewBrowser(t, "")
	_, _, tok := confTokens(t, p.s, p.a, p.rpa, b, "openid")
	su, _ := url.Parse(p.s.URL)
	var sso *http.Cookie
	for _, c := range b.Jar.Cookies(su) {
		if strings.Contains(c.Name, "idp_session") {
			sso = c
		}
	}
	if sso == nil {
		t.Fatal("no SSO cookie after login")
	}
	// Sanity: the session works before logout.
	confSilentCode(t, b, p.s, p.a, AuthParams{Extra: url.Values{"prompt": {"none"}}})

	state := randString()
	q := url.Values{"id_token_hint": {tok.Extra("id_token").(string)}, "post_logout_redirect_uri": {"https://rp.example/bye"},
		"state": {state}, "client_id": {p.a.ID}}
	r := b.Get(p.s.URL + "/end_session?" + q.Encode())
	if r.Status != http.StatusFound {
		t.Fatalf("end_session: %d %s\n%s", r.Status, r.Location, r.Body)
	}
	lu, _ := url.Parse(r.Location)
	if lu == nil || lu.Scheme+"://"+lu.Host+lu.Path != "https://rp.example/bye" || lu.Query().Get("state") != state {
		t.Errorf("end_session redirect %q, want https://rp.example/bye?state=%s", r.Location, state)
	}
	for _, c := range b.Jar.Cookies(su) {
		if c.Name == sso.Name {
			t.Errorf("SSO cookie still in the browser after logout")
		}
	}
	f, pg, ui := confSilent(t, b, p.s, p.a, AuthParams{Extra: url.Values{"prompt": {"none"}}})
	if ui {
		t.Fatalf("prompt=none after logout showed a page %d", pg.Status)
	}
	if rq := confRedirectQuery(t, pg.Location, p.a.RedirectURI); rq.Get("error") != "login_required" || rq.Get("state") != f.State {
		t.Errorf("prompt=none after logout: %s, want login_required", pg.Location)
	}
	// The session is gone on the server, not only from this browser.
	b2 := NewBrowser(t, "")
	b2.Jar.SetCookies(su, []*http.Cookie{{Name: sso.Name, Value: sso.Value, Path: "/"}})
	_, pg, ui = confSilent(t, b2, p.s, p.a, AuthParams{Extra: url.Values{"prompt": {"none"}}})
	if ui || !strings.Contains(pg.Location, "error=login_required") {
		t.Errorf("replayed SSO cookie after logout: %d %s, want login_required", pg.Status, pg.Location)
	}
	if st, _, _ := confUserinfo(t, p.s, "get", tok.AccessToken); st != http.StatusUnauthorized {
		t.Errorf("access token after logout: userinfo %d, want 401", st)
	}
}

// TestEndSessionUnregisteredPostLogoutRedirectNotFollowed: logout never
// redirects to a post_logout_redirect_uri the client did not register.
func TestEndSessionUnregisteredPostLogoutRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	_, _, tok := confTokens(t, p.s, p.a, p.rpa, nil, "openid")
	hint := tok.Extra("id_token").(string)
	for _, q := range []url.Values{
		{"id_token_hint": {hint}, "post_logout_redirect_uri": {"https://evil.example/bye"}, "state": {"s"}},
		{"id_token_hint": {hint}, "post_logout_redirect_uri": {"https://rp.example/bye/"}},
		{"client_id": {p.a.ID}, "post_logout_redirect_uri": {"https://evil.example/bye"}},
		{"post_logout_redirect_uri": {"https://evil.example/bye"}},
		{"id_token_hint": {hint}, "client_id": {p.b.ID}, "post_logout_redirect_uri": {"https://rp.example/bye"}},
	} {
		r := NewBrowser(t, "").Get(p.s.URL + "/end_session?" + q.Encode())
		if r.Status >= 500 {
			t.Errorf("end_session %v: status %d", q, r.Status)
		}
		if r.Location != "" && !strings.HasPrefix(r.Location, p.s.URL+"/") {
			t.Errorf("end_session %v redirected off the provider to %q", q, r.Location)
		}
	}
}

// TestCallbackInOtherBrowserRefused: the callback URL of a finished login,
// opened in a browser without the flow cookie, gets 403 and no code; the
// browser that signed in still gets its code.
func TestCallbackInOtherBrowserRefused(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u := confNewUser(t, p.s)
	a := NewBrowser(t, "")
	f, _ := confStart(t, a, p.s, p.a, AuthParams{})
	r := confToCallback(t, f, u, false)
	other := NewBrowser(t, "")
	for i := 0; i < 2; i++ {
		cr := other.Get(r.Location)
		if cr.Status != http.StatusForbidden || cr.Location != "" || strings.Contains(cr.Body, "code=") {
			t.Errorf("callback in another browser: %d %q, want 403 without a code", cr.Status, cr.Location)
		}
	}
	code := f.CodeFrom(f.Follow(r))
	tok, err := p.rpa.Exchange(f, code)
	if err != nil {
		t.Fatalf("exchange in the signing-in browser: %v", err)
	}
	confCheckID(t, p.s, p.rpa, tok, f, u, p.a)
}
