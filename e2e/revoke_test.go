package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// rvSignedIn signs a new user in at client c in a new browser with an
// offline_access grant and returns the browser and its tokens.
func rvSignedIn(t *testing.T, p *confProto, c Client, rp *RP) (User, *Browser, *oauth2.Token) {
	t.Helper()
	b := NewBrowser(t, "")
	u := confNewUser(t, p.s)
	f, code := confLogin(t, b, p.s, c, AuthParams{Scope: "openid offline_access"}, u, false)
	tok, err := rp.Exchange(f, code)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return u, b, tok
}

// rvEnded checks that b's SSO session no longer satisfies prompt=none and
// that the access and refresh tokens are dead.
func rvEnded(t *testing.T, p *confProto, c Client, b *Browser, tok *oauth2.Token, what string) {
	t.Helper()
	f, pg, ui := confSilent(t, b, p.s, c, AuthParams{Extra: url.Values{"prompt": {"none"}}})
	if ui || atkHasCode(pg.Location) {
		t.Errorf("%s: the old SSO session still gives a code (%d %s)", what, pg.Status, pg.Location)
	} else if q := confRedirectQuery(t, pg.Location, c.RedirectURI); q.Get("error") != "login_required" || q.Get("state") != f.State {
		t.Errorf("%s: prompt=none: %s, want login_required", what, pg.Location)
	}
	if lgAccessLive(t, p.s, tok) {
		t.Errorf("%s: the access token still works", what)
	}
	if st, body := confRefresh(t, p.s, c, tok.RefreshToken); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("%s: the refresh token still works: %d %v", what, st, body)
	}
}

// TestAttackFactorResetEndsSessions: someone who knew the old factor (and
// signed in with it) is signed out when an operator resets the
// authenticator, issues new recovery codes, deletes the account or revokes
// the sessions; each command says what it ended.
func TestAttackFactorResetEndsSessions(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	for _, cmd := range []string{"reset-totp", "recovery-codes", "delete", "revoke-sessions"} {
		t.Run(cmd, func(t *testing.T) {
			u, b, tok := rvSignedIn(t, p, p.a, p.rpa)
			out := CLI(t, p.s.DB, "", "user", cmd, u.Name)
			if !strings.Contains(out, "1 SSO session ended") || !strings.Contains(out, "2 tokens revoked") {
				t.Errorf("idp user %s output does not say what it ended:\n%s", cmd, out)
			}
			rvEnded(t, p, p.a, b, tok, cmd)
		})
	}
	t.Run("revoke-sessions --client", func(t *testing.T) {
		u, b, tokA := rvSignedIn(t, p, p.a, p.rpa)
		fb, code := confSilentCode(t, b, p.s, p.b, AuthParams{Scope: "openid offline_access"})
		tokB, err := p.rpb.Exchange(fb, code)
		if err != nil {
			t.Fatal(err)
		}
		out := CLI(t, p.s.DB, "", "user", "revoke-sessions", u.Name, "--client", p.b.ID)
		if !strings.Contains(out, "0 SSO sessions ended, 2 tokens revoked") {
			t.Errorf("revoke-sessions --client output:\n%s", out)
		}
		if lgAccessLive(t, p.s, tokB) {
			t.Error("the revoked client's access token still works")
		}
		if st, _ := confRefresh(t, p.s, p.b, tokB.RefreshToken); st == http.StatusOK {
			t.Error("the revoked client's refresh token still works")
		}
		if !lgAccessLive(t, p.s, tokA) {
			t.Error("revoke-sessions --client revoked another client's token")
		}
		if _, _, err := CLIResult(p.s.DB, "", "user", "revoke-sessions", u.Name, "--client", "no-such-client"); err == nil {
			t.Error("revoke-sessions with an unknown client succeeded")
		}
	})
}

// TestAttackPendingSignInsEndWithSessions: someone who knows the password
// and the TOTP secret prepares, in his own browser, a full login stopped
// before the callback, an SSO-completed request stopped before the
// callback, and an SSO code not yet exchanged. After the operator's
// reset-totp, revoke-sessions or recovery-codes none of them gives a code
// or tokens.
func TestAttackPendingSignInsEndWithSessions(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	for _, cmd := range []string{"reset-totp", "revoke-sessions", "recovery-codes"} {
		t.Run(cmd, func(t *testing.T) {
			u := confNewUser(t, p.s)
			x := NewBrowser(t, "127.0.0.9")
			full, _ := confStart(t, x, p.s, p.a, AuthParams{Scope: "openid offline_access"})
			done := confToCallback(t, full, u, false)
			ssoURL, sso := AuthorizeURL(p.s, p.a, AuthParams{Scope: "openid offline_access"})
			sso.B = x
			lp := x.Get(x.Get(ssoURL).Location)
			if lp.Status != http.StatusSeeOther || !strings.Contains(lp.Location, "/authorize/callback") {
				t.Fatalf("SSO login page: %d %s", lp.Status, lp.Location)
			}
			coded, code := confSilentCode(t, x, p.s, p.a, AuthParams{Scope: "openid offline_access"})

			out := CLI(t, p.s.DB, "", "user", cmd, u.Name)
			if !strings.Contains(out, "3 sign-ins in progress cancelled") {
				t.Errorf("idp user %s does not say it cancelled the three waiting sign-ins:\n%s", cmd, out)
			}
			for name, step := range map[string]struct {
				f  *Flow
				cb string
			}{"full login": {full, done.Location}, "SSO request": {sso, lp.Location}} {
				r := x.Get(step.cb)
				if atkHasCode(r.Location) {
					st, _, _ := confTokenRequest(t, p.s, p.a, url.Values{"grant_type": {"authorization_code"},
						"code": {confRedirectQuery(t, r.Location, p.a.RedirectURI).Get("code")}, "redirect_uri": {p.a.RedirectURI}, "code_verifier": {step.f.Verifier}})
					t.Errorf("%s prepared before %s: a code after it (exchange %d)", name, cmd, st)
				}
			}
			if tok, err := p.rpa.Exchange(coded, code); err == nil {
				t.Errorf("a code issued before %s was redeemed after it (refresh token %v)", cmd, tok.RefreshToken != "")
			}
		})
	}
}
