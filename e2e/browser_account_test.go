package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// TestBrowserAccountPage: a person opens /account in chromium, signs in
// with the password and a code (the provider's own sign-in), sees the
// page with this browser marked, and changes the password there. Another
// browser's session ends with it, the old password is refused afterwards
// and the new one works.
func TestBrowserAccountPage(t *testing.T) {
	brRequireChromium(t)
	s := StartServer(t)
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	u := AddUser(t, s.DB, "petra", "correct horse battery")
	// Another browser signed in to an application, with a recovery code
	// (the TOTP step of this time window is the chromium sign-in's).
	codes := lgRecoveryCodes(t, s, u)
	other := NewBrowser(t, "")
	lgLogin(t, s, c, rp, other, u, codes[0], "openid")
	if !lgSessionWorks(t, other, s, c) {
		t.Fatal("the other browser's session does not work before the change")
	}

	b := brNewBrowser(t)
	b.navigate(s.URL + "/account")
	b.waitVisible("sign-in page", "#username")
	if h := b.text("h1"); h != "Sign in to your account" {
		t.Errorf("sign-in heading %q", h)
	}
	brSubmitPassword(b, u.Name, u.Password)
	b.waitVisible("code page", "#code")
	brSubmitCode(b, "/login/totp", u.Code(time.Now()))
	b.waitVisible("account page", "#profile")
	if !strings.HasSuffix(b.url(), "/account") {
		t.Fatalf("after the sign-in: %s, want /account", b.url())
	}
	if got := b.text(".this"); got != "(this browser)" {
		t.Errorf("this browser marked %q", got)
	}
	if n := strings.Count(b.text("#sessions + .table"), "Last used"); n != 1 {
		t.Logf("sessions table header count %d", n)
	}
	b.shot("account", "account.png")

	b.typeInto("#current", u.Password)
	b.typeInto("#new", "marble orchard three")
	b.typeInto("#repeat", "marble orchard three")
	b.shot("account-change-password", "account-password.png")
	b.clickAndLoad("change password", `form[action="/account/password"] button[type=submit]`)
	b.waitVisible("notice", `p.notice[role=status]`)
	if msg := b.text(`p.notice[role=status]`); !strings.Contains(msg, "Your password is changed") {
		t.Fatalf("after the change: %q", msg)
	}
	if d, ok := b.lastDoc("/account/password"); !ok || d.Status != http.StatusOK {
		t.Errorf("the change answered %d, want 200", d.Status)
	}
	b.shot("account-password-changed", "")

	if lgSessionWorks(t, other, s, c) {
		t.Error("the other browser's session survived the password change")
	}
	if p := NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Password(u.Name, u.Password); p.Status != http.StatusUnauthorized {
		t.Errorf("the old password after the change: %d, want 401", p.Status)
	}
	if p := NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Password(u.Name, "marble orchard three"); p.Status != http.StatusSeeOther {
		t.Errorf("the new password: %d, want 303", p.Status)
	}
	// This browser is still signed in to its account page.
	b.navigate(s.URL + "/account")
	b.waitVisible("account page again", "#profile")

	// A new authenticator: the old one's codes stop working, the new
	// one's work, and new recovery codes are shown once.
	b.typeInto("#current-totp", "marble orchard three")
	b.clickAndLoad("new authenticator", `form[action="/account/authenticator"] button[type=submit]`)
	b.waitVisible("new key", "code.secret")
	b.shot("account-new-authenticator", "")
	newKey := strings.ReplaceAll(b.text("code.secret"), " ", "")
	b.typeInto("#code", enrCode(t, newKey, time.Now()))
	b.clickAndLoad("confirm new authenticator", `form[action="/account/authenticator/confirm"] button[type=submit]`)
	b.waitVisible("new codes", "#codes")
	if msg := b.text(`p.notice[role=status]`); !strings.Contains(msg, "Your new authenticator is set up") {
		t.Fatalf("after the new authenticator: %q", msg)
	}
	newCodes := strings.Fields(b.value("#codes"))
	if len(newCodes) != 10 {
		t.Fatalf("%d new recovery codes shown, want 10", len(newCodes))
	}
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	if p := acPasswordPage(t, f, u.Name, "marble orchard three"); p.Status != http.StatusOK {
		t.Fatalf("password after the new authenticator: %d", p.Status)
	}
	if p := f.TOTP(u.Code(time.Now())); p.Status != http.StatusUnauthorized {
		t.Errorf("the old authenticator's code after the replacement: %d, want 401", p.Status)
	}
	// An old recovery code is refused, a new one signs another browser in.
	other2 := NewBrowser(t, "")
	f2 := other2.StartFlow(s, c, AuthParams{})
	acPasswordPage(t, f2, u.Name, "marble orchard three")
	f2.Form = Hidden(other2.Get(s.URL + "/login/recovery?id=" + f2.Form.Get("id")).Body)
	if p := enrPost(f2, "/login/recovery", url.Values{"recovery_code": {codes[1]}}); p.Status != http.StatusUnauthorized {
		t.Errorf("an old recovery code after the replacement: %d, want 401", p.Status)
	}
	u.Password = "marble orchard three"
	lgLogin(t, s, c, rp, other2, u, newCodes[0], "openid")
	if !lgSessionWorks(t, other2, s, c) {
		t.Fatal("the new recovery code's session does not work")
	}

	// End that session from the account page.
	b.clickAndLoad("back to the account", "a.button")
	b.waitVisible("account page", "#profile")
	b.clickAndLoad("end the other session", `form[action="/account/sessions/end"] input[value="one"] ~ button`)
	b.waitVisible("notice", `p.notice[role=status]`)
	if lgSessionWorks(t, other2, s, c) {
		t.Error("the session ended from the account page still works")
	}
	b.shot("account-session-ended", "")

	// The same page in dark mode and on a phone: it renders, nothing is
	// cut off (the tables scroll inside the card).
	b.do("dark mode", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
		return err
	}))
	b.navigate(s.URL + "/account")
	b.waitVisible("account page in dark mode", "#profile")
	b.shot("account-dark", "")
	b.do("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
	b.navigate(s.URL + "/account")
	b.waitVisible("account page on a phone", "#profile")
	b.shot("account-phone-dark", "")
}
