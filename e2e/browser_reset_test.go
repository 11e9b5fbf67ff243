package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestBrowserPasswordReset: in chromium, a person who forgot their
// password follows "Forgot your password?" from the sign-in page, gets the
// mail (the SMTP sink), opens its link, proves the second factor (a
// recovery code: they lost the app), chooses a new password, and signs in
// to their account page with it and their authenticator; the "your
// password was changed" notice arrives (issue 13, item 5).
func TestBrowserPasswordReset(t *testing.T) {
	brRequireChromium(t)
	s, sink := rsMailServer(t)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "rosa", "correct horse battery", "--email-verified")
	codes := lgRecoveryCodes(t, s, u)
	authURL, _ := AuthorizeURL(s, c, AuthParams{})

	b := brNewBrowser(t)
	b.navigate(authURL)
	b.waitVisible("sign-in page", "#username")
	b.clickAndLoad("forgot your password", `a[href^="/login/forgot"]`)
	b.waitVisible("forgot form", "#identifier")
	b.shot("forgot", "forgot.png")
	b.typeInto("#identifier", "rosa@example.com")
	b.clickAndLoad("send the link", `form[action="/login/forgot"] button[type=submit]`)
	b.waitVisible("the answer", `p.notice[role=status]`)
	if msg := b.text(`p.notice[role=status]`); !strings.Contains(msg, "If an account matches") {
		t.Fatalf("the answer: %q", msg)
	}
	b.clickAndLoad("back to sign-in", `a[href^="/login/?id="]`)
	b.waitVisible("sign-in page again", "#username")

	link := rsLink(t, ntMail(t, sink, "rosa@example.com", "reset your password", 1, append(codes, u.Password)), "/login/reset")
	b.navigate(link)
	b.waitVisible("reset form", "#recovery_code")
	b.shot("reset", "reset.png")
	b.typeInto("#recovery_code", codes[0])
	b.typeInto("#new", "marble orchard three")
	b.typeInto("#repeat", "marble orchard three")
	b.clickAndLoad("set the new password", `form[action="/login/reset"] button[type=submit]`)
	b.waitVisible("done", `p.notice[role=status]`)
	if msg := b.text(`p.notice[role=status]`); !strings.Contains(msg, "is changed") {
		t.Fatalf("after the reset: %q", msg)
	}
	b.shot("reset-done", "")

	b.clickAndLoad("sign in to the account", "a.button")
	b.waitVisible("sign-in page", "#username")
	brSubmitPassword(b, u.Name, "marble orchard three")
	b.waitVisible("code page", "#code")
	brSubmitCode(b, "/login/totp", u.Code(time.Now()))
	b.waitVisible("account page", "#profile")
	ntMail(t, sink, "rosa@example.com", "your password was changed", 1, append(codes, "marble orchard three"), "through a password reset link")
	ntMail(t, sink, "rosa@example.com", "a recovery code was used", 1, codes, "Recovery codes left: 9")
}
