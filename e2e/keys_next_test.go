package e2e

import (
	"context"
	"fmt"
	"path/filepath"
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

// TestKeysWithdrawCompromisedKey: after an emergency rotation the
// compromised key is withdrawn: it leaves JWKS within the servers' key
// cache time even though a staged rotation had scheduled it for 48 h more,
// and a token it signed no longer verifies for a relying party that fetches
// JWKS afresh. The signing key itself cannot be withdrawn.
func TestKeysWithdrawCompromisedKey(t *testing.T) {
	t.Parallel()
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "kim", "correct horse battery")
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	tok, err := NewRP(t, s, c).Exchange(f, f.Login(u))
	if err != nil {
		t.Fatal(err)
	}
	raw := tok.Extra("id_token").(string)
	old := secKid(t, raw)
	if _, _, err := CLIResult(s.DB, "", "keys", "withdraw", old); err == nil {
		t.Fatal("keys withdraw accepted the key that signs now")
	}
	CLI(t, s.DB, "", "keys", "rotate")                          // a staged rotation: old is published for 48 h more
	CLI(t, s.DB, "", "keys", "rotate", "--activate-after", "0") // the emergency: a new key signs at once
	CLI(t, s.DB, "", "keys", "withdraw", old)
	deadline := time.Now().Add(8 * time.Second)
	for knKids(t, s)[old] {
		if time.Now().After(deadline) {
			t.Fatalf("the withdrawn key %s is still in JWKS after 8 s", old)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if _, err := NewRP(t, s, c).Verifier.Verify(context.Background(), raw); err == nil {
		t.Error("an ID token signed with the withdrawn key still verifies")
	}
	// Sign-ins go on with the new key.
	u2 := AddUser(t, s.DB, "kit", "correct horse battery")
	f = NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	if _, err := NewRP(t, s, c).Exchange(f, f.Login(u2)); err != nil {
		t.Fatalf("sign-in after the withdrawal: %v", err)
	}
}

// TestKeysRotateBeforeFirstServe: a rotation on a database whose server has
// never run activates at once: there is no key to wait for.
func TestKeysRotateBeforeFirstServe(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "idp.db")
	ensureKey(t, db)
	CLI(t, db, "", "keys", "rotate")
	s := StartServerOn(t, db, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "lee", "correct horse battery")
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	if _, err := NewRP(t, s, c).Exchange(f, f.Login(u)); err != nil {
		t.Fatalf("sign-in after keys rotate on a fresh database: %v", err)
	}
}
