package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestConformance mirrors the OpenID Foundation "Basic OP" plan module by
// module (docs/CONFORMANCE.md). The modules run with a confidential client
// registered with --pkce=optional (the suite's Basic OP modules send no
// PKCE) that authenticates with client_secret_basic, and the PKCE module
// with a default client (PKCE S256 required). Every subtest has its own
// user and browser, so the subtests are independent and run in parallel.
func TestConformance(t *testing.T) {
	e := confNewEnv(t)

	t.Run("oidcc-server", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		f, code := confLogin(t, NewBrowser(t, ""), e.s, e.c, AuthParams{NoPKCE: true}, u, false)
		tok, err := e.rp.Exchange(f, code)
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		if !strings.EqualFold(tok.TokenType, "bearer") || tok.AccessToken == "" {
			t.Errorf("token_type %q, access token %q", tok.TokenType, tok.AccessToken)
		}
		if tok.Expiry.IsZero() || time.Until(tok.Expiry) <= 0 {
			t.Errorf("expires_in missing or not positive: expiry %v", tok.Expiry)
		}
		cl := confCheckID(t, e.s, e.rp, tok, f, u, e.c)
		for _, want := range []string{"pwd", "otp", "mfa"} {
			if !slices.Contains(cl.AMR, want) {
				t.Errorf("amr %v lacks %q", cl.AMR, want)
			}
		}
		if cl.AuthTime == 0 || cl.AuthTime > cl.Iat {
			t.Errorf("auth_time %d missing or after iat %d", cl.AuthTime, cl.Iat)
		}
		if cl.AZP != e.c.ID {
			t.Errorf("azp %q, want %q", cl.AZP, e.c.ID)
		}
	})

	t.Run("oidcc-response-type-missing", func(t *testing.T) {
		t.Parallel()
		raw, f := AuthorizeURL(e.s, e.c, AuthParams{NoPKCE: true})
		au, _ := url.Parse(raw)
		q := au.Query()
		q.Del("response_type")
		au.RawQuery = q.Encode()
		p := NewBrowser(t, "").Get(au.String())
		if p.Status != http.StatusFound && p.Status != http.StatusSeeOther {
			t.Fatalf("want an error redirect to the client, got %d %q\n%s", p.Status, p.Location, p.Body)
		}
		rq := confRedirectQuery(t, p.Location, e.c.RedirectURI)
		if rq.Get("error") != "invalid_request" || rq.Get("state") != f.State || rq.Has("code") {
			t.Errorf("want error=invalid_request with state and no code, got %s", p.Location)
		}
	})

	// The three userinfo modules share the assertion: 200, JSON, sub of
	// the ID token, and the claims of the granted scopes.
	userinfo := func(mode string) func(t *testing.T) {
		return func(t *testing.T) {
			t.Parallel()
			u := confNewUser(t, e.s)
			tok, cl := confFullFlow(t, e, u, AuthParams{NoPKCE: true})
			st, info, hdr := confUserinfo(t, e.s, mode, tok.AccessToken)
			if st != http.StatusOK {
				t.Fatalf("userinfo (%s): status %d %v", mode, st, info)
			}
			if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
				t.Errorf("userinfo content type %q", hdr.Get("Content-Type"))
			}
			if info["sub"] != cl.Sub || info["email"] != u.Name+"@example.com" || info["preferred_username"] != u.Name || info["name"] != "User "+u.Name {
				t.Errorf("userinfo (%s) = %v; want sub %s and the profile/email claims", mode, info, cl.Sub)
			}
			// A token that is not ours is refused the same way.
			if st, _, _ := confUserinfo(t, e.s, mode, tok.AccessToken+"x"); st != http.StatusUnauthorized {
				t.Errorf("userinfo (%s) with a tampered token: status %d, want 401", mode, st)
			}
		}
	}
	t.Run("oidcc-userinfo-get", userinfo("get"))
	t.Run("oidcc-userinfo-post-header", userinfo("post-header"))
	t.Run("oidcc-userinfo-post-body", userinfo("post-body"))

	t.Run("oidcc-ensure-request-without-nonce-succeeds-for-code-flow", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		tok, _ := confFullFlow(t, e, u, AuthParams{NoPKCE: true, NoNonce: true})
		if n, ok := confRawIDClaims(t, tok)["nonce"]; ok {
			t.Errorf("ID token carries nonce %v although none was sent", n)
		}
	})

	// Scopes: the claims of each supported scope are returned in the ID
	// token and at userinfo; unsupported scopes are accepted, yield no
	// claims, and discovery does not advertise them.
	type scopeCase struct {
		name, scope    string
		present        []string
		absent         []string
		notAdvertised  []string // scopes
		claimsNotInDoc []string
	}
	profile := []string{"name", "preferred_username"}
	// email_verified is absent, not false, for an unverified address (the
	// library's UserInfo omits a false Bool); it is checked separately.
	email := []string{"email"}
	address := []string{"address"}
	phone := []string{"phone_number", "phone_number_verified"}
	for _, sc := range []scopeCase{
		{name: "oidcc-scope-profile", scope: "openid profile", present: profile, absent: slices.Concat(email, address, phone)},
		{name: "oidcc-scope-email", scope: "openid email", present: email, absent: slices.Concat(profile, address, phone)},
		{name: "oidcc-scope-address", scope: "openid address", absent: slices.Concat(profile, email, address, phone),
			notAdvertised: []string{"address"}, claimsNotInDoc: address},
		{name: "oidcc-scope-phone", scope: "openid phone", absent: slices.Concat(profile, email, address, phone),
			notAdvertised: []string{"phone"}, claimsNotInDoc: phone},
		{name: "oidcc-scope-all", scope: "openid profile email address phone", present: slices.Concat(profile, email),
			absent: slices.Concat(address, phone), notAdvertised: []string{"address", "phone"}, claimsNotInDoc: slices.Concat(address, phone)},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			for _, s := range strings.Fields(sc.scope) {
				if !slices.Contains(sc.notAdvertised, s) && !slices.Contains(e.d.ScopesSupported, s) {
					t.Errorf("scopes_supported %v lacks %q, whose claims are returned", e.d.ScopesSupported, s)
				}
			}
			for _, s := range sc.notAdvertised {
				if slices.Contains(e.d.ScopesSupported, s) {
					t.Errorf("scopes_supported %v lists unsupported %q", e.d.ScopesSupported, s)
				}
			}
			for _, c := range sc.present {
				if !slices.Contains(e.d.ClaimsSupported, c) {
					t.Errorf("claims_supported %v lacks returned claim %q", e.d.ClaimsSupported, c)
				}
			}
			for _, c := range sc.claimsNotInDoc {
				if slices.Contains(e.d.ClaimsSupported, c) {
					t.Errorf("claims_supported %v lists unsupported %q", e.d.ClaimsSupported, c)
				}
			}
			u := confNewUser(t, e.s)
			tok, cl := confFullFlow(t, e, u, AuthParams{NoPKCE: true, Scope: sc.scope})
			if granted, ok := tok.Extra("scope").(string); ok {
				for _, s := range sc.notAdvertised {
					if slices.Contains(strings.Fields(granted), s) {
						t.Errorf("granted scope %q includes unsupported %q", granted, s)
					}
				}
			}
			idc := confRawIDClaims(t, tok)
			st, info, _ := confUserinfo(t, e.s, "get", tok.AccessToken)
			if st != http.StatusOK || info["sub"] != cl.Sub {
				t.Fatalf("userinfo: %d %v", st, info)
			}
			for where, m := range map[string]map[string]any{"id_token": idc, "userinfo": info} {
				for _, c := range sc.present {
					if _, ok := m[c]; !ok {
						t.Errorf("%s lacks %q for scope %q: %v", where, c, sc.scope, m)
					}
				}
				for _, c := range sc.absent {
					if _, ok := m[c]; ok {
						t.Errorf("%s has %q not granted by scope %q: %v", where, c, sc.scope, m)
					}
				}
			}
			for where, m := range map[string]map[string]any{"id_token": idc, "userinfo": info} {
				v, ok := m["email_verified"]
				if _, isBool := v.(bool); ok && (!isBool || !slices.Contains(sc.present, "email")) {
					t.Errorf("%s: email_verified %v without the email scope or not a boolean", where, v)
				}
			}
			if slices.Contains(sc.present, "email") && (idc["email"] != u.Name+"@example.com" || info["email"] != u.Name+"@example.com") {
				t.Errorf("email: id_token %v userinfo %v", idc["email"], info["email"])
			}
			if slices.Contains(sc.present, "preferred_username") && (idc["preferred_username"] != u.Name || info["name"] != "User "+u.Name) {
				t.Errorf("profile: id_token %v userinfo %v", idc["preferred_username"], info["name"])
			}
		})
	}

	t.Run("oidcc-ensure-other-scope-order-succeeds", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		tok, _ := confFullFlow(t, e, u, AuthParams{NoPKCE: true, Scope: "email profile openid"})
		idc := confRawIDClaims(t, tok)
		if idc["email"] != u.Name+"@example.com" || idc["preferred_username"] != u.Name {
			t.Errorf("claims for reordered scopes missing: %v", idc)
		}
	})

	for _, display := range []string{"page", "popup"} {
		t.Run("oidcc-display-"+display, func(t *testing.T) {
			t.Parallel()
			u := confNewUser(t, e.s)
			confFullFlow(t, e, u, AuthParams{NoPKCE: true, Extra: url.Values{"display": {display}}})
		})
	}

	t.Run("oidcc-prompt-login", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		b := NewBrowser(t, "")
		// The first login uses the previous step's code, so that the
		// second can use the current one (TOTP replay protection).
		f1, code1 := confLogin(t, b, e.s, e.c, AuthParams{NoPKCE: true}, u, true)
		first := confExchangeID(t, e, f1, code1, u)
		time.Sleep(1100 * time.Millisecond) // auth_time has 1 s resolution
		// The library turns prompt=login into max_age=0; despite the live
		// SSO session, StartFlow must land on the password form.
		f2, code2 := confLogin(t, b, e.s, e.c, AuthParams{NoPKCE: true, Extra: url.Values{"prompt": {"login"}}}, u, false)
		second := confExchangeID(t, e, f2, code2, u)
		if second.AuthTime <= first.AuthTime {
			t.Errorf("auth_time after prompt=login %d, want newer than %d", second.AuthTime, first.AuthTime)
		}
	})

	t.Run("oidcc-prompt-none-not-logged-in", func(t *testing.T) {
		t.Parallel()
		b := NewBrowser(t, "")
		f, p, ui := confSilent(t, b, e.s, e.c, AuthParams{NoPKCE: true, Extra: url.Values{"prompt": {"none"}}})
		if ui {
			t.Fatalf("prompt=none showed a page: %d\n%s", p.Status, p.Body)
		}
		rq := confRedirectQuery(t, p.Location, e.c.RedirectURI)
		if rq.Get("error") != "login_required" || rq.Get("state") != f.State || rq.Has("code") {
			t.Errorf("want error=login_required with state at the redirect URI, got %s", p.Location)
		}
	})

	t.Run("oidcc-prompt-none-logged-in", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		b := NewBrowser(t, "")
		f1, code1 := confLogin(t, b, e.s, e.c, AuthParams{NoPKCE: true}, u, false)
		first := confExchangeID(t, e, f1, code1, u)
		f2, code2 := confSilentCode(t, b, e.s, e.c, AuthParams{NoPKCE: true, Extra: url.Values{"prompt": {"none"}}})
		second := confExchangeID(t, e, f2, code2, u)
		if second.AuthTime != first.AuthTime {
			t.Errorf("SSO auth_time %d, want the session's %d", second.AuthTime, first.AuthTime)
		}
	})

	t.Run("oidcc-max-age-1", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		b := NewBrowser(t, "")
		f1, code1 := confLogin(t, b, e.s, e.c, AuthParams{NoPKCE: true}, u, true)
		first := confExchangeID(t, e, f1, code1, u)
		time.Sleep(2 * time.Second)
		// The session is older than max_age: the password form again.
		f2, code2 := confLogin(t, b, e.s, e.c, AuthParams{NoPKCE: true, Extra: url.Values{"max_age": {"1"}}}, u, false)
		second := confExchangeID(t, e, f2, code2, u)
		if second.AuthTime == 0 || second.AuthTime <= first.AuthTime {
			t.Errorf("auth_time with max_age=1: %d, want present and newer than %d", second.AuthTime, first.AuthTime)
		}
		if time.Since(time.Unix(second.AuthTime, 0)) > 10*time.Second {
			t.Errorf("auth_time %d is not the fresh login", second.AuthTime)
		}
	})

	t.Run("oidcc-max-age-10000", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		b := NewBrowser(t, "")
		f1, code1 := confLogin(t, b, e.s, e.c, AuthParams{NoPKCE: true}, u, false)
		first := confExchangeID(t, e, f1, code1, u)
		f2, code2 := confSilentCode(t, b, e.s, e.c, AuthParams{NoPKCE: true, Extra: url.Values{"max_age": {"10000"}}})
		second := confExchangeID(t, e, f2, code2, u)
		if second.AuthTime == 0 || second.AuthTime != first.AuthTime {
			t.Errorf("auth_time with max_age=10000: %d, want the session's %d", second.AuthTime, first.AuthTime)
		}
	})

	t.Run("oidcc-ensure-request-with-unknown-parameter-succeeds", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		confFullFlow(t, e, u, AuthParams{NoPKCE: true, Extra: url.Values{"extra_param": {"ignore me"}, "x-foo": {"1"}}})
	})

	t.Run("oidcc-id-token-hint", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		b := NewBrowser(t, "")
		f1, code1 := confLogin(t, b, e.s, e.c, AuthParams{NoPKCE: true}, u, false)
		tok1, err := e.rp.Exchange(f1, code1)
		if err != nil {
			t.Fatal(err)
		}
		confCheckID(t, e.s, e.rp, tok1, f1, u, e.c)
		hint := tok1.Extra("id_token").(string)
		f2, code2 := confSilentCode(t, b, e.s, e.c, AuthParams{NoPKCE: true,
			Extra: url.Values{"prompt": {"none"}, "id_token_hint": {hint}}})
		confExchangeID(t, e, f2, code2, u)

		// The hint of another user does not match this browser's session.
		other := confNewUser(t, e.s)
		tokO, _ := confFullFlow(t, e, other, AuthParams{NoPKCE: true})
		f3, p, ui := confSilent(t, b, e.s, e.c, AuthParams{NoPKCE: true,
			Extra: url.Values{"prompt": {"none"}, "id_token_hint": {tokO.Extra("id_token").(string)}}})
		if ui {
			t.Fatalf("prompt=none showed a page: %d", p.Status)
		}
		if rq := confRedirectQuery(t, p.Location, e.c.RedirectURI); rq.Get("error") != "login_required" || rq.Get("state") != f3.State || rq.Has("code") {
			t.Errorf("id_token_hint of another user: want login_required, got %s", p.Location)
		}
	})

	t.Run("oidcc-login-hint", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		b := NewBrowser(t, "")
		f, page := confStart(t, b, e.s, e.c, AuthParams{NoPKCE: true, Extra: url.Values{"login_hint": {u.Name}}})
		if !strings.Contains(page.Body, `name="username"`) || !strings.Contains(page.Body, `value="`+u.Name+`"`) {
			t.Errorf("login page does not pre-fill the username %q:\n%s", u.Name, page.Body)
		}
		confExchangeID(t, e, f, confFinish(t, f, u, false), u)
	})

	for _, loc := range []struct{ name, param, value string }{
		{"oidcc-ui-locales", "ui_locales", "fr-CA fr en"},
		{"oidcc-claims-locales", "claims_locales", "de-DE de"},
	} {
		t.Run(loc.name, func(t *testing.T) {
			t.Parallel()
			u := confNewUser(t, e.s)
			_, cl := confFullFlow(t, e, u, AuthParams{NoPKCE: true, Extra: url.Values{loc.param: {loc.value}}})
			if cl.PrefUser != u.Name {
				t.Errorf("claims with %s: %+v", loc.param, cl)
			}
		})
	}

	t.Run("oidcc-ensure-request-with-acr-values-succeeds", func(t *testing.T) {
		t.Parallel()
		if len(e.d.ACRValuesSupported) == 0 {
			t.Fatal("discovery lists no acr_values_supported")
		}
		u := confNewUser(t, e.s)
		_, cl := confFullFlow(t, e, u, AuthParams{NoPKCE: true,
			Extra: url.Values{"acr_values": {"urn:example:unknown-acr " + e.d.ACRValuesSupported[0]}}})
		if cl.ACR == "" || !slices.Contains(e.d.ACRValuesSupported, cl.ACR) {
			t.Errorf("acr %q, want one of %v", cl.ACR, e.d.ACRValuesSupported)
		}
	})

	t.Run("oidcc-codereuse", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		f, code := confLogin(t, NewBrowser(t, ""), e.s, e.c, AuthParams{NoPKCE: true}, u, false)
		tok, err := e.rp.Exchange(f, code)
		if err != nil {
			t.Fatalf("first exchange: %v", err)
		}
		confCheckID(t, e.s, e.rp, tok, f, u, e.c)
		_, err = e.rp.Exchange(f, code)
		confWantOAuthError(t, err, "invalid_grant")
	})

	t.Run("oidcc-codereuse-30seconds", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		f, code := confLogin(t, NewBrowser(t, ""), e.s, e.c, AuthParams{NoPKCE: true, Scope: "openid profile offline_access"}, u, false)
		tok, err := e.rp.Exchange(f, code)
		if err != nil {
			t.Fatalf("first exchange: %v", err)
		}
		confCheckID(t, e.s, e.rp, tok, f, u, e.c)
		if tok.RefreshToken == "" {
			t.Fatal("no refresh token for offline_access")
		}
		if st, _, _ := confUserinfo(t, e.s, "get", tok.AccessToken); st != http.StatusOK {
			t.Fatalf("userinfo before reuse: %d", st)
		}
		// The suite waits 30 s. The waiting itself proves nothing beyond
		// "the reuse is detected after the first exchange completed" (the
		// used code stays recorded until the auth request expires, 10 min),
		// and the code lifetime is 60 s, so a reuse after 30 s and after 3 s
		// take the same path. 3 s keeps the package fast.
		time.Sleep(3 * time.Second)
		_, err = e.rp.Exchange(f, code)
		confWantOAuthError(t, err, "invalid_grant")
		// Reuse revokes what the code produced: the access token ...
		if st, _, _ := confUserinfo(t, e.s, "get", tok.AccessToken); st != http.StatusUnauthorized {
			t.Errorf("userinfo with the access token of a reused code: status %d, want 401", st)
		}
		if in := confIntrospect(t, e.s, e.c, tok.AccessToken); in["active"] != false {
			t.Errorf("introspection of the access token of a reused code: %v", in)
		}
		// ... and the refresh token.
		st, body, _ := confTokenRequest(t, e.s, e.c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
		if st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("refresh with the refresh token of a reused code: %d %v", st, body)
		}
	})

	t.Run("oidcc-ensure-registered-redirect-uri", func(t *testing.T) {
		t.Parallel()
		raw, _ := AuthorizeURL(e.s, e.c, AuthParams{NoPKCE: true, Redirect: "https://rp.example/cb/not-registered"})
		p := NewBrowser(t, "").Get(raw)
		confWantErrorPage(t, p, "unregistered redirect_uri")
	})

	t.Run("oidcc-unsigned-request-object-supported-correctly-or-rejected-as-unsupported", func(t *testing.T) {
		t.Parallel()
		state, nonce := randString(), randString()
		ro := confUnsignedJWT(map[string]any{
			"iss": e.c.ID, "aud": e.s.URL, "client_id": e.c.ID, "response_type": "code",
			"redirect_uri": e.c.RedirectURI, "scope": "openid profile", "state": state, "nonce": nonce,
		})
		q := url.Values{"client_id": {e.c.ID}, "response_type": {"code"}, "scope": {"openid"},
			"redirect_uri": {e.c.RedirectURI}, "state": {state}, "request": {ro}}
		p := NewBrowser(t, "").Get(e.s.URL + "/authorize?" + q.Encode())
		if p.Status >= 500 {
			t.Fatalf("request object: status %d", p.Status)
		}
		if e.d.RequestParameterSupported {
			if p.Status != http.StatusFound || !strings.Contains(p.Location, "/login/") {
				t.Fatalf("request objects are advertised but the request was not honoured: %d %s", p.Status, p.Location)
			}
			return
		}
		// Not advertised: refused cleanly, as an OAuth error at the
		// registered redirect URI.
		rq := confRedirectQuery(t, p.Location, e.c.RedirectURI)
		if rq.Get("error") != "request_not_supported" || rq.Get("state") != state || rq.Has("code") {
			t.Errorf("want error=request_not_supported at the redirect URI, got %d %s", p.Status, p.Location)
		}
	})

	t.Run("oidcc-claims-essential", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		claims := `{"userinfo":{"name":{"essential":true}},"id_token":{"email":{"essential":true}}}`
		tok, cl := confFullFlow(t, e, u, AuthParams{NoPKCE: true, Scope: "openid profile", Extra: url.Values{"claims": {claims}}})
		st, info, _ := confUserinfo(t, e.s, "get", tok.AccessToken)
		if st != http.StatusOK || info["sub"] != cl.Sub {
			t.Fatalf("userinfo: %d %v", st, info)
		}
		// Essential is a wish, not a condition: name comes with the
		// granted profile scope either way.
		if info["name"] != "User "+u.Name {
			t.Errorf("userinfo lacks name: %v", info)
		}
		if e.d.ClaimsParameterSupported {
			if confRawIDClaims(t, tok)["email"] == nil {
				t.Error("claims parameter advertised but the essential email claim is missing from the ID token")
			}
		}
	})

	t.Run("oidcc-ensure-request-object-with-redirect-uri", func(t *testing.T) {
		t.Parallel()
		for _, roRedirect := range []string{e.c.RedirectURI, "https://evil.example/cb"} {
			state := randString()
			ro := confUnsignedJWT(map[string]any{
				"iss": e.c.ID, "aud": e.s.URL, "client_id": e.c.ID, "response_type": "code",
				"redirect_uri": roRedirect, "scope": "openid", "state": state,
			})
			q := url.Values{"client_id": {e.c.ID}, "response_type": {"code"}, "scope": {"openid"},
				"redirect_uri": {e.c.RedirectURI}, "state": {state}, "request": {ro}}
			p := NewBrowser(t, "").Get(e.s.URL + "/authorize?" + q.Encode())
			if p.Status >= 500 {
				t.Fatalf("request object with redirect_uri %s: status %d", roRedirect, p.Status)
			}
			if strings.HasPrefix(p.Location, "https://evil.example") {
				t.Fatalf("redirected to the request object's unregistered redirect_uri: %s", p.Location)
			}
			if e.d.RequestParameterSupported {
				continue
			}
			rq := confRedirectQuery(t, p.Location, e.c.RedirectURI)
			if rq.Get("error") != "request_not_supported" || rq.Get("state") != state {
				t.Errorf("request object with redirect_uri %s: want request_not_supported, got %d %s", roRedirect, p.Status, p.Location)
			}
		}
	})

	t.Run("oidcc-refresh-token", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		f, code := confLogin(t, NewBrowser(t, ""), e.s, e.c, AuthParams{NoPKCE: true, Scope: "openid email offline_access"}, u, false)
		tok, err := e.rp.Exchange(f, code)
		if err != nil {
			t.Fatal(err)
		}
		cl := confCheckID(t, e.s, e.rp, tok, f, u, e.c)
		if tok.RefreshToken == "" {
			t.Fatal("no refresh token for offline_access")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// x/oauth2 refreshes an expired token by itself (client_secret_basic).
		tok2, err := e.rp.Config.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)}).Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if tok2.AccessToken == "" || tok2.AccessToken == tok.AccessToken || tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
			t.Errorf("refresh did not return a new access and refresh token")
		}
		cl2 := confCheckID(t, e.s, e.rp, tok2, nil, u, e.c)
		if cl2.Iss != cl.Iss || cl2.Sub != cl.Sub || !slices.Equal(confAud(cl2), confAud(cl)) {
			t.Errorf("refreshed ID token iss/sub/aud %s/%s/%v, want %s/%s/%v", cl2.Iss, cl2.Sub, cl2.Aud, cl.Iss, cl.Sub, cl.Aud)
		}
		if cl2.AuthTime != cl.AuthTime || !slices.Equal(cl2.AMR, cl.AMR) {
			t.Errorf("refreshed ID token auth_time/amr %d/%v, want %d/%v", cl2.AuthTime, cl2.AMR, cl.AuthTime, cl.AMR)
		}
		if st, info, _ := confUserinfo(t, e.s, "get", tok2.AccessToken); st != http.StatusOK || info["sub"] != u.ID {
			t.Errorf("userinfo with the refreshed access token: %d %v", st, info)
		}
	})

	t.Run("oidcc-ensure-request-with-valid-pkce-succeeds", func(t *testing.T) {
		t.Parallel()
		u := confNewUser(t, e.s)
		f, code := confLogin(t, NewBrowser(t, ""), e.s, e.pc, AuthParams{}, u, false)
		if f.Verifier == "" {
			t.Fatal("flow without a PKCE verifier")
		}
		tok, err := e.prp.Exchange(f, code)
		if err != nil {
			t.Fatalf("exchange with S256 verifier: %v", err)
		}
		confCheckID(t, e.s, e.prp, tok, f, u, e.pc)
	})
}

// ---------------------------------------------------------------------------
// Helpers shared by conformance_test.go, protocol_test.go and
// persistence_test.go. Every name starts with conf.

const confPassword = "correct horse battery staple"

// confEnv is one server with the two clients of the conformance plan.
type confEnv struct {
	s   *Server
	d   confDisco
	c   Client // confidential, --pkce=optional
	rp  *RP    // its relying party, client_secret_basic
	pc  Client // default registration: PKCE S256 required
	prp *RP
}

func confNewEnv(t *testing.T) *confEnv {
	t.Helper()
	s := StartServer(t, fastPolicy...)
	e := &confEnv{s: s}
	e.c = AddClient(t, s.DB, "conf-rp", "--pkce=optional")
	e.pc = AddClient(t, s.DB, "conf-pkce")
	e.rp = confNewRP(t, s, e.c)
	e.prp = confNewRP(t, s, e.pc)
	e.d = confDiscovery(t, s)
	return e
}

// confNewRP is NewRP pinned to client_secret_basic.
func confNewRP(t testing.TB, s *Server, c Client) *RP {
	t.Helper()
	rp := NewRP(t, s, c)
	rp.Config.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	return rp
}

var confUserSeq atomic.Int64

// confNewUser creates a fresh user, so that every test has its own TOTP
// replay state and lock counters.
func confNewUser(t testing.TB, s *Server) User {
	t.Helper()
	return AddUser(t, s.DB, fmt.Sprintf("conf%d-%s", confUserSeq.Add(1), strings.ToLower(randString()[:6])), confPassword)
}

// confTOTP returns u's code for the current step, or for the previous
// one when prev is set. The server accepts the current and the previous
// step, each once per user, so a user who signs in first with the
// previous step's code can sign in again at once with the current one.
// Near the end of a step the previous code would expire on the way, so
// we wait (< 2 s) for the next step first.
func confTOTP(u User, prev bool) string {
	if !prev {
		return u.Code(time.Now())
	}
	now := time.Now()
	intoStep := time.Duration(now.UnixNano() % int64(30*time.Second))
	if rest := 30*time.Second - intoStep; rest < 2*time.Second {
		time.Sleep(rest + 50*time.Millisecond)
	}
	return u.Code(time.Now().Add(-30 * time.Second))
}

// confStart sends b to /authorize and on to the login page, which must
// show the password form; it returns the flow and that page.
func confStart(t testing.TB, b *Browser, s *Server, c Client, p AuthParams) (*Flow, Page) {
	t.Helper()
	u, f := AuthorizeURL(s, c, p)
	f.B = b
	r := b.Get(u)
	if r.Status != http.StatusFound || !strings.Contains(r.Location, "/login/") {
		t.Fatalf("authorize: want 302 to /login/, got %d %q\n%s", r.Status, r.Location, r.Body)
	}
	f.LoginURL = r.Location
	page := b.Get(f.LoginURL)
	if page.Status != http.StatusOK || !strings.Contains(page.Body, `autocomplete="current-password"`) {
		t.Fatalf("login page: want 200 password form, got %d\n%s", page.Status, page.Body)
	}
	f.Form = Hidden(page.Body)
	return f, page
}

// confFinish runs password and TOTP (see confTOTP for prev) and returns the
// authorization code.
func confFinish(t testing.TB, f *Flow, u User, prev bool) string {
	t.Helper()
	return f.CodeFrom(f.Follow(confToCallback(t, f, u, prev)))
}

// confToCallback runs password and TOTP and returns the TOTP step's answer,
// a 303 to the callback not yet followed (see confTOTP for prev).
func confToCallback(t testing.TB, f *Flow, u User, prev bool) Page {
	t.Helper()
	p := f.Password(u.Name, u.Password)
	if p.Status != http.StatusSeeOther {
		t.Fatalf("password step: want 303, got %d\n%s", p.Status, p.Body)
	}
	page := f.B.Get(p.Location)
	if !strings.Contains(page.Body, `autocomplete="one-time-code"`) {
		t.Fatalf("want TOTP form, got %d\n%s", page.Status, page.Body)
	}
	f.Form = Hidden(page.Body)
	r := f.TOTP(confTOTP(u, prev))
	if r.Status != http.StatusSeeOther || !strings.Contains(r.Location, "/authorize/callback") {
		t.Fatalf("TOTP step: want 303 to the callback, got %d %s\n%s", r.Status, r.Location, r.Body)
	}
	return r
}

// confLogin is a whole interactive login: authorize, password form,
// password, TOTP, code.
func confLogin(t testing.TB, b *Browser, s *Server, c Client, p AuthParams, u User, prev bool) (*Flow, string) {
	t.Helper()
	f, _ := confStart(t, b, s, c, p)
	return f, confFinish(t, f, u, prev)
}

// confFullFlow logs u in with the conformance client in a new browser,
// exchanges the code and checks the ID token.
func confFullFlow(t testing.TB, e *confEnv, u User, p AuthParams) (*oauth2.Token, IDClaims) {
	t.Helper()
	f, code := confLogin(t, NewBrowser(t, ""), e.s, e.c, p, u, false)
	tok, err := e.rp.Exchange(f, code)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok, confCheckID(t, e.s, e.rp, tok, f, u, e.c)
}

// confExchangeID exchanges code with the conformance client and checks
// the ID token.
func confExchangeID(t testing.TB, e *confEnv, f *Flow, code string, u User) IDClaims {
	t.Helper()
	tok, err := e.rp.Exchange(f, code)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return confCheckID(t, e.s, e.rp, tok, f, u, e.c)
}

// confCheckID verifies the ID token with the RP (signature via JWKS, iss,
// aud, exp, and the flow's nonce when f is not nil) and checks iss, sub,
// aud, exp and iat explicitly.
func confCheckID(t testing.TB, s *Server, rp *RP, tok *oauth2.Token, f *Flow, u User, c Client) IDClaims {
	t.Helper()
	cl := rp.VerifyID(t, tok, f)
	now := time.Now().Unix()
	if cl.Iss != s.URL {
		t.Errorf("iss %q, want %q", cl.Iss, s.URL)
	}
	if cl.Sub != u.ID || cl.Sub == "" {
		t.Errorf("sub %q, want %q", cl.Sub, u.ID)
	}
	if !slices.Contains(confAud(cl), c.ID) {
		t.Errorf("aud %v lacks %q", cl.Aud, c.ID)
	}
	if cl.Exp <= now || cl.Exp <= cl.Iat {
		t.Errorf("exp %d not after now %d and iat %d", cl.Exp, now, cl.Iat)
	}
	if cl.Iat == 0 || cl.Iat > now+5 || cl.Iat < now-120 {
		t.Errorf("iat %d not close to now %d", cl.Iat, now)
	}
	return cl
}

// confAud is the aud claim as a list.
func confAud(cl IDClaims) []string {
	switch a := cl.Aud.(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, v := range a {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// confRawIDClaims decodes the (already verified) ID token's payload.
func confRawIDClaims(t testing.TB, tok *oauth2.Token) map[string]any {
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	return confJWTPayload(t, raw)
}

func confJWTPayload(t testing.TB, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	return m
}

// confUnsignedJWT is a request object with alg none.
func confUnsignedJWT(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// confFollow fetches u and follows redirects while they stay on the
// provider. It returns the last response (a redirect that leaves the
// provider, or a page) and whether a page with a body was shown on the way
// (interaction).
func confFollow(t testing.TB, b *Browser, s *Server, u string) (Page, bool) {
	t.Helper()
	p := b.Get(u)
	for i := 0; i < 10; i++ {
		if p.Status < 300 || p.Status > 399 {
			return p, true
		}
		if !strings.HasPrefix(p.Location, s.URL+"/") {
			return p, false
		}
		p = b.Get(p.Location)
	}
	t.Fatal("too many redirects")
	return p, false
}

// confSilent starts an authorization request that should need no UI.
func confSilent(t testing.TB, b *Browser, s *Server, c Client, p AuthParams) (*Flow, Page, bool) {
	t.Helper()
	u, f := AuthorizeURL(s, c, p)
	f.B = b
	page, ui := confFollow(t, b, s, u)
	return f, page, ui
}

// confSilentCode expects an authorization request to end at the client
// with a code, without any page (SSO).
func confSilentCode(t testing.TB, b *Browser, s *Server, c Client, p AuthParams) (*Flow, string) {
	t.Helper()
	f, page, ui := confSilent(t, b, s, c, p)
	if ui {
		t.Fatalf("want a code without interaction, got a page %d\n%s", page.Status, page.Body)
	}
	if !strings.HasPrefix(page.Location, c.RedirectURI+"?") {
		t.Fatalf("want a redirect to %s, got %s", c.RedirectURI, page.Location)
	}
	return f, f.CodeFrom(page.Location)
}

// confRedirectQuery checks that loc is the client's redirect URI and
// returns its query.
func confRedirectQuery(t testing.TB, loc, redirectURI string) url.Values {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil || loc == "" {
		t.Fatalf("bad redirect %q: %v", loc, err)
	}
	base := *u
	base.RawQuery = ""
	if base.String() != redirectURI {
		t.Fatalf("redirect to %q, want the client's %q", loc, redirectURI)
	}
	return u.Query()
}

// confWantErrorPage: a 4xx page, no redirect, no code.
func confWantErrorPage(t testing.TB, p Page, what string) {
	t.Helper()
	if p.Status < 400 || p.Status > 499 {
		t.Errorf("%s: status %d, want a 4xx error page", what, p.Status)
	}
	if p.Location != "" {
		t.Errorf("%s: redirected to %q", what, p.Location)
	}
	if strings.Contains(p.Body, "code=") {
		t.Errorf("%s: body mentions a code: %s", what, p.Body)
	}
}

// confWantOAuthError checks an x/oauth2 error's OAuth error code.
func confWantOAuthError(t testing.TB, err error, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("want OAuth error %s, got %v", code, err)
	}
	if re.ErrorCode != code {
		t.Errorf("OAuth error %q (%s), want %q", re.ErrorCode, re.ErrorDescription, code)
	}
	if re.Response != nil && re.Response.StatusCode != http.StatusBadRequest {
		t.Errorf("OAuth error %s with status %d, want 400", code, re.Response.StatusCode)
	}
}

// confDisco is the part of the discovery document the tests read.
type confDisco struct {
	Issuer                           string   `json:"issuer"`
	AuthorizationEndpoint            string   `json:"authorization_endpoint"`
	TokenEndpoint                    string   `json:"token_endpoint"`
	UserinfoEndpoint                 string   `json:"userinfo_endpoint"`
	IntrospectionEndpoint            string   `json:"introspection_endpoint"`
	RevocationEndpoint               string   `json:"revocation_endpoint"`
	EndSessionEndpoint               string   `json:"end_session_endpoint"`
	JWKSURI                          string   `json:"jwks_uri"`
	ScopesSupported                  []string `json:"scopes_supported"`
	ClaimsSupported                  []string `json:"claims_supported"`
	GrantTypesSupported              []string `json:"grant_types_supported"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	CodeChallengeMethodsSupported    []string `json:"code_challenge_methods_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	ACRValuesSupported               []string `json:"acr_values_supported"`
	RequestParameterSupported        bool     `json:"request_parameter_supported"`
	ClaimsParameterSupported         bool     `json:"claims_parameter_supported"`
	Raw                              map[string]any
}

func confDiscovery(t testing.TB, s *Server) confDisco {
	t.Helper()
	st, body, _ := confDo(t, http.MethodGet, s.URL+"/.well-known/openid-configuration", nil, nil)
	if st != http.StatusOK {
		t.Fatalf("discovery: status %d", st)
	}
	var d confDisco
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("discovery: %v", err)
	}
	if err := json.Unmarshal(body, &d.Raw); err != nil {
		t.Fatal(err)
	}
	return d
}

// confHTTP is a plain HTTP client for protocol requests (no cookies, no
// redirects followed).
var confHTTP = &http.Client{
	Timeout:       15 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// confDo sends one request and returns status, body and headers. hdr may
// set headers, and "basic" → "id:secret" sets HTTP Basic authentication.
func confDo(t testing.TB, method, u string, body io.Reader, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	st, b, h, err := confDoErr(method, u, body, hdr)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	return st, b, h
}

// confDoErr is confDo for goroutines: it reports instead of failing.
func confDoErr(method, u string, body io.Reader, hdr map[string]string) (int, []byte, http.Header, error) {
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range hdr {
		if k == "basic" {
			id, secret, _ := strings.Cut(v, ":")
			req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := confHTTP.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, resp.Header, err
}

// confForm posts a form, authenticated as c with client_secret_basic
// when c.ID is set.
func confForm(t testing.TB, u string, c Client, form url.Values) (int, map[string]any, http.Header) {
	t.Helper()
	hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	if c.ID != "" {
		hdr["basic"] = c.ID + ":" + c.Secret
	}
	st, body, h := confDo(t, http.MethodPost, u, strings.NewReader(form.Encode()), hdr)
	m := map[string]any{}
	_ = json.Unmarshal(body, &m)
	return st, m, h
}

// confTokenRequest posts to the token endpoint as c.
func confTokenRequest(t testing.TB, s *Server, c Client, form url.Values) (int, map[string]any, http.Header) {
	t.Helper()
	return confForm(t, s.URL+"/oauth/token", c, form)
}

// confUserinfo calls userinfo: mode "get" (Bearer header), "post-header"
// or "post-body" (access_token form parameter).
func confUserinfo(t testing.TB, s *Server, mode, at string) (int, map[string]any, http.Header) {
	t.Helper()
	var (
		st   int
		body []byte
		h    http.Header
	)
	switch mode {
	case "get":
		st, body, h = confDo(t, http.MethodGet, s.URL+"/userinfo", nil, map[string]string{"Authorization": "Bearer " + at})
	case "post-header":
		st, body, h = confDo(t, http.MethodPost, s.URL+"/userinfo", strings.NewReader(""),
			map[string]string{"Authorization": "Bearer " + at, "Content-Type": "application/x-www-form-urlencoded"})
	case "post-body":
		st, body, h = confDo(t, http.MethodPost, s.URL+"/userinfo", strings.NewReader(url.Values{"access_token": {at}}.Encode()),
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	default:
		t.Fatalf("userinfo mode %q", mode)
	}
	m := map[string]any{}
	_ = json.Unmarshal(body, &m)
	return st, m, h
}

// confIntrospect asks the introspection endpoint about token as c.
func confIntrospect(t testing.TB, s *Server, c Client, token string) map[string]any {
	t.Helper()
	st, m, _ := confForm(t, s.URL+"/oauth/introspect", c, url.Values{"token": {token}})
	if st != http.StatusOK {
		t.Fatalf("introspection as %s: status %d %v", c.ID, st, m)
	}
	if _, ok := m["active"].(bool); !ok {
		t.Fatalf("introspection without a boolean active: %v", m)
	}
	return m
}

// confRevoke revokes token as c and returns the status.
func confRevoke(t testing.TB, s *Server, c Client, token, hint string) int {
	t.Helper()
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	st, _, _ := confForm(t, s.URL+"/revoke", c, form)
	return st
}
