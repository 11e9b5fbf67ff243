package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The token and revocation endpoints act on a code or refresh token only
// for the client it was issued to, after that client authenticated
// (RFC 6749 §4.1.3, RFC 7009 §2.1): whoever merely saw a code or a token
// can neither burn it nor revoke the client's tokens.

// TestAttackCodeBurnWithoutCredentials: a code presented without the
// client's secret, with a wrong secret, by another (authenticated) client,
// or without the PKCE verifier is refused and not consumed: the client then
// redeems it.
func TestAttackCodeBurnWithoutCredentials(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u := confNewUser(t, p.s)
	f, code := confLogin(t, NewBrowser(t, ""), p.s, p.a, AuthParams{}, u, false)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {p.a.RedirectURI}, "code_verifier": {f.Verifier}}
	noSecret := url.Values{"client_id": {p.a.ID}}
	for k, v := range form {
		noSecret[k] = v
	}
	noVerifier := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {p.a.RedirectURI}}
	for name, try := range map[string]func() (int, map[string]any){
		"no secret": func() (int, map[string]any) { st, b, _ := confTokenRequest(t, p.s, Client{}, noSecret); return st, b },
		"wrong secret": func() (int, map[string]any) {
			st, b, _ := confTokenRequest(t, p.s, Client{ID: p.a.ID, Secret: "wrong"}, form)
			return st, b
		},
		"another client":   func() (int, map[string]any) { st, b, _ := confTokenRequest(t, p.s, p.b, form); return st, b },
		"no PKCE verifier": func() (int, map[string]any) { st, b, _ := confTokenRequest(t, p.s, p.a, noVerifier); return st, b },
	} {
		st, body := try()
		if st == http.StatusOK {
			t.Fatalf("%s: the code was redeemed: %v", name, body)
		}
		t.Logf("%s: %d %v", name, st, body["error"])
	}
	// The token endpoint takes POST only: a code in a GET query (and so in
	// logs and histories) is refused and not consumed.
	get := NewBrowser(t, "")
	req, _ := http.NewRequest(http.MethodGet, p.s.URL+"/oauth/token?"+form.Encode(), nil)
	req.SetBasicAuth(p.a.ID, p.a.Secret)
	if r, err := atkDo(get, req); err != nil || r.Status != http.StatusMethodNotAllowed {
		t.Errorf("GET /oauth/token: %d %v, want 405", r.Status, err)
	}
	tok, err := p.rpa.Exchange(f, code)
	if err != nil {
		t.Fatalf("the client's own exchange after the attempts: %v (the code was burnt)", err)
	}
	confCheckID(t, p.s, p.rpa, tok, f, u, p.a)

	// Reuse by its own client is still detected, and audited with the
	// user and the client.
	if st, _, _ := confTokenRequest(t, p.s, p.a, form); st == http.StatusOK {
		t.Fatal("a second redemption succeeded")
	}
	if lgAccessLive(t, p.s, tok) {
		t.Error("code reuse did not revoke the tokens issued from it")
	}
	var reused []atkEvent
	for _, e := range atkAudit(t, p.s.DB, u.Name) {
		if e.Event == "code_reused" {
			reused = append(reused, e)
		}
	}
	if len(reused) != 1 || reused[0].UserID == "" || !strings.Contains(CLI(t, p.s.DB, "", "audit", "--json"), `"client_id":"`+p.a.ID+`","detail":"tokens issued`) {
		t.Errorf("code_reused audit rows %+v: want one naming the user and the client", reused)
	}
}

// TestAttackRefreshRevokeByOtherClient: another client presenting a used
// refresh token (to /token or to /revoke) revokes nothing of the owner's
// family; a wrong token_type_hint does not stop the owner's revocation
// (RFC 7009 §2.1); revocations are audited.
func TestAttackRefreshRevokeByOtherClient(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u, _, tok := confTokens(t, p.s, p.a, p.rpa, nil, "openid offline_access")
	used := tok.RefreshToken
	st, body := confRefresh(t, p.s, p.a, used)
	if st != http.StatusOK {
		t.Fatalf("refresh: %d %v", st, body)
	}
	current, _ := body["refresh_token"].(string)

	// Another registered client replays the used token.
	if st, body := confRefresh(t, p.s, p.b, used); st == http.StatusOK {
		t.Fatalf("another client refreshed with the token: %v", body)
	}
	if st := confRevoke(t, p.s, p.b, used, ""); st != http.StatusOK && st != http.StatusUnauthorized && st != http.StatusBadRequest {
		t.Logf("revoke by another client: %d", st)
	}
	st, body = confRefresh(t, p.s, p.a, current)
	if st != http.StatusOK {
		t.Fatalf("the owner's current refresh token died after another client's replay: %d %v", st, body)
	}
	current, _ = body["refresh_token"].(string)

	// The owner revokes with the wrong hint: the token must die anyway.
	if st := confRevoke(t, p.s, p.a, current, "access_token"); st != http.StatusOK {
		t.Fatalf("revoke with hint access_token: %d", st)
	}
	if st, body := confRefresh(t, p.s, p.a, current); st == http.StatusOK {
		t.Errorf("a refresh token revoked with token_type_hint=access_token still works: %v", body)
	}
	n := 0
	for _, e := range atkAudit(t, p.s.DB, u.Name) {
		if e.Event == "token_revoked" {
			n++
		}
	}
	if n == 0 {
		t.Error("/revoke wrote no audit row")
	}
}
