package e2e

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestRestartKeepsState: everything a client or browser holds survives a
// crash (SIGKILL) and restart on the same database: users, clients, the
// signing key (old ID tokens still verify), the opaque-token key, the SSO
// session, refresh tokens and the record of used codes.
func TestRestartKeepsState(t *testing.T) {
	t.Parallel()
	s := StartServer(t, fastPolicy...)
	u := confNewUser(t, s)
	c := AddClient(t, s.DB, "conf-persist")
	rp := confNewRP(t, s, c)
	b := NewBrowser(t, "")
	// The previous step's code now, so that the same user can sign in
	// again after the restart with the current one.
	f, code := confLogin(t, b, s, c, AuthParams{Scope: "openid profile offline_access"}, u, true)
	tok, err := rp.Exchange(f, code)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	cl := confCheckID(t, s, rp, tok, f, u, c)
	rawID, _ := tok.Extra("id_token").(string)
	kid, _ := confJWTHeader(t, rawID)["kid"].(string)
	if tok.RefreshToken == "" || kid == "" {
		t.Fatalf("want a refresh token and a kid, got %q %q", tok.RefreshToken, kid)
	}

	s.Kill()
	if _, _, _, err := confDoErr(http.MethodGet, s.URL+"/healthz", nil, nil); err == nil {
		t.Fatal("server still answers after SIGKILL")
	}
	s.Restart()

	// JWKS still publishes the key, and a fresh RP (new discovery, new
	// JWKS fetch) verifies the ID token issued before the crash.
	found := false
	for _, k := range confJWKS(t, s.URL+"/keys") {
		found = found || k["kid"] == kid
	}
	if !found {
		t.Errorf("JWKS after restart lacks the old kid %q", kid)
	}
	rp2 := confNewRP(t, s, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	idt, err := rp2.Verifier.Verify(ctx, rawID)
	if err != nil {
		t.Fatalf("old ID token does not verify after restart: %v", err)
	}
	if idt.Subject != u.ID {
		t.Errorf("old ID token sub %q", idt.Subject)
	}

	// The opaque access token is still readable.
	if st, info, _ := confUserinfo(t, s, "get", tok.AccessToken); st != http.StatusOK || info["sub"] != u.ID {
		t.Errorf("userinfo with the pre-crash access token: %d %v", st, info)
	}

	// The SSO session still satisfies prompt=none, and the client still
	// authenticates at the token endpoint.
	f2, code2 := confSilentCode(t, b, s, c, AuthParams{Extra: url.Values{"prompt": {"none"}}})
	tok2, err := rp2.Exchange(f2, code2)
	if err != nil {
		t.Fatalf("exchange after restart: %v", err)
	}
	cl2 := confCheckID(t, s, rp2, tok2, f2, u, c)
	if cl2.AuthTime != cl.AuthTime {
		t.Errorf("SSO auth_time after restart %d, want %d", cl2.AuthTime, cl.AuthTime)
	}

	// The refresh token still refreshes.
	tok3, err := rp2.Config.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)}).Token()
	if err != nil {
		t.Fatalf("refresh after restart: %v", err)
	}
	confCheckID(t, s, rp2, tok3, nil, u, c)

	// The user can sign in interactively.
	f4, code4 := confLogin(t, NewBrowser(t, ""), s, c, AuthParams{}, u, false)
	tok4, err := rp2.Exchange(f4, code4)
	if err != nil {
		t.Fatalf("exchange of a new login after restart: %v", err)
	}
	confCheckID(t, s, rp2, tok4, f4, u, c)

	// The first code is still known as used: its reuse fails and revokes
	// what it produced, including the refresh token rotated from it.
	_, err = rp2.Exchange(f, code)
	confWantOAuthError(t, err, "invalid_grant")
	st, body := confRefresh(t, s, c, tok3.RefreshToken)
	confWantInvalidGrant(t, "refresh token of a reused pre-crash code", st, body)
}
