package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// knKids is the set of kids of the JWKS at s.
func knKids(t *testing.T, s *Server) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, k := range confJWKS(t, s.URL+"/keys") {
		out[k["kid"].(string)] = true
	}
	return out
}

// TestKeysRotatePublishesNextKeyFirst: JWKS answers may be cached for
// their max-age (300 s), so `idp keys rotate` publishes the new key at
// once and signs with it only after that: a relying party that fetched
// JWKS just before the rotation never meets an unknown kid. `keys list`
// shows the key as next, with its activation time.
func TestKeysRotatePublishesNextKeyFirst(t *testing.T) {
	t.Parallel()
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	cached := knKids(t, s) // what a relying party holds from before the rotation
	out := CLI(t, s.DB, "", "keys", "rotate")
	published := false
	// Longer than the servers' 5 s key cache.
	deadline := time.Now().Add(7 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		u := AddUser(t, s.DB, fmt.Sprintf("next%d", i), "correct horse battery")
		f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
		tok, err := rp.Exchange(f, f.Login(u))
		if err != nil {
			t.Fatal(err)
		}
		if kid := secKid(t, tok.Extra("id_token").(string)); !cached[kid] {
			t.Fatalf("after `idp keys rotate` (%q) an ID token is signed with kid %s, which a JWKS cached just before the rotation (%v) does not list", strings.TrimSpace(out), kid, cached)
		}
		for kid := range knKids(t, s) {
			if !cached[kid] {
				published = true
			}
		}
		time.Sleep(time.Second)
	}
	if !published {
		t.Fatal("JWKS does not list the next key")
	}
	if list := CLI(t, s.DB, "", "keys", "list"); !strings.Contains(list, "next, signs from") {
		t.Errorf("keys list does not show the next key:\n%s", list)
	}
}
