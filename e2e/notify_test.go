package e2e

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// ntMail waits (bounded) for the one mail to addr whose subject has
// subject, and checks what every notification must be: from the
// configured sender, to that address alone, a text part and an HTML part
// that both say each of want, and none of the secrets anywhere in the
// raw message (issue 13, item 4: no secret in any mail but a link's own
// token).
func ntMail(t *testing.T, sink *Sink, addr, subject string, n int, secrets []string, want ...string) SinkMail {
	t.Helper()
	got := sink.WaitTo(addr, subject, n, 10*time.Second)
	if len(got) != n {
		t.Fatalf("mails to %s with %q: %d, want %d (all: %d)", addr, subject, len(got), n, len(sink.Mails()))
	}
	m := got[n-1]
	if len(m.To) != 1 || m.From != "idp@example.com" || m.Msg.Header.Get("Bcc") != "" || m.Msg.Header.Get("Cc") != "" {
		t.Fatalf("%q: envelope from %q to %v, headers %v", subject, m.From, m.To, m.Msg.Header)
	}
	text, htm := m.Part("text/plain"), m.Part("text/html")
	if text == "" || htm == "" {
		t.Fatalf("%q: text part %d bytes, HTML part %d bytes; want both", subject, len(text), len(htm))
	}
	for _, w := range want {
		if !strings.Contains(text, w) || !strings.Contains(html.UnescapeString(htm), w) {
			t.Errorf("%q does not say %q in both parts:\n%s", subject, w, text)
		}
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(string(m.Raw), s) {
			t.Errorf("%q contains the secret %q", subject, s)
		}
	}
	return m
}

// TestNotifications, through the real binary and the SMTP sink: every
// notification of issue 13 item 4 is triggered by its event and arrives
// once, at the account's verified address, with text and HTML, naming no
// password, code or key; the events that carry them are in the audit
// trail. The operator's commands notify too.
func TestNotifications(t *testing.T) {
	sink := StartSink(t)
	s := StartServer(t, "--smtp-url", sink.URL(), "--smtp-from", "idp@example.com", "--mail-interval", "100ms",
		"--totp-max-failures", "3", "--totp-lock", "1s", "--totp-lock-max", "1s")
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	u := AddUser(t, s.DB, "nora", "correct horse battery", "--email-verified")
	addr := "nora@example.com"
	secrets := []string{u.Password, u.Key.Secret()}

	// The operator renews the recovery codes: a notice, no code in it.
	codes := lgRecoveryCodes(t, s, u)
	secrets = append(secrets, codes...)
	ntMail(t, sink, addr, "you have new recovery codes", 1, secrets, "by your administrator", "The old codes no longer work")

	// A sign-in with a recovery code in a new browser: two notices.
	b := NewBrowser(t, "")
	lgLogin(t, s, c, rp, b, u, codes[0], "openid")
	ntMail(t, sink, addr, "a recovery code was used", 1, secrets, "Recovery codes left: 9")
	ntMail(t, sink, addr, "a sign-in from a new browser", 1, secrets, "Address: 127.0.0.1", "Go-http-client")
	// The same browser again: a recovery-code notice, no new-browser one.
	lgLogin(t, s, c, rp, b, u, codes[1], "openid")
	ntMail(t, sink, addr, "a recovery code was used", 2, secrets, "Recovery codes left: 8")

	time.Sleep(400 * time.Millisecond) // four delivery rounds
	if n := len(sink.To(addr, "a sign-in from a new browser")); n != 1 {
		t.Fatalf("new-browser notices after a second sign-in in the same browser: %d, want 1", n)
	}
	// Once the operator has revoked everything, that browser's cookie,
	// still well signed, names no remembered device: new again (review H,
	// F2).
	CLI(t, s.DB, "", "user", "revoke-sessions", u.Name)
	lgLogin(t, s, c, rp, b, u, codes[2], "openid")
	ntMail(t, sink, addr, "a sign-in from a new browser", 2, secrets)

	// Wrong codes after the password until the second step locks: one
	// "wrong code" notice (once an hour) and one lock notice.
	for i := 0; i < 3; i++ {
		f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
		acPasswordPage(t, f, u.Name, u.Password)
		if p := f.TOTP("000000"); p.Status != http.StatusUnauthorized {
			t.Fatalf("wrong code %d: %d", i, p.Status)
		}
	}
	ntMail(t, sink, addr, "someone entered your password, then a wrong code", 1, secrets)
	ntMail(t, sink, addr, "locked after wrong codes", 1, secrets, "wait and try again")
	time.Sleep(1100 * time.Millisecond) // past the 1 s lock

	// The account page: change the password, renew the codes, replace the
	// authenticator; each its notice.
	ab := NewBrowser(t, "")
	token := acAccountSignIn(t, s, ab, u, u.Password, time.Now())
	ntMail(t, sink, addr, "a sign-in from a new browser", 3, secrets)
	next := "marble orchard three"
	secrets = append(secrets, next)
	if p := ab.Post(s.URL+"/account/password", url.Values{"csrf": {token}, "current": {u.Password}, "new": {next}, "repeat": {next}}); p.Status != http.StatusOK {
		t.Fatalf("change the password: %d", p.Status)
	}
	ntMail(t, sink, addr, "your password was changed", 1, secrets, "on your account page")
	page := ab.Get(s.URL + "/account")
	p := ab.Post(s.URL+"/account/recovery-codes", url.Values{"csrf": {token}, "current": {next}, "generation": {Hidden(page.Body).Get("generation")}})
	if p.Status != http.StatusOK {
		t.Fatalf("renew the codes: %d", p.Status)
	}
	secrets = append(secrets, regexp.MustCompile(`[a-z0-9]{5}(?:-[a-z0-9]{5}){4}`).FindAllString(p.Body, -1)...)
	ntMail(t, sink, addr, "you have new recovery codes", 2, secrets, "on your account page")
	p = ab.Post(s.URL+"/account/authenticator", url.Values{"csrf": {token}, "current": {next}})
	m := regexp.MustCompile(`<code class="secret"[^>]*>([^<]+)</code>`).FindStringSubmatch(p.Body)
	if p.Status != http.StatusOK || m == nil {
		t.Fatalf("offer a new authenticator: %d", p.Status)
	}
	newKey := strings.ReplaceAll(m[1], " ", "")
	secrets = append(secrets, newKey)
	p = ab.Post(s.URL+"/account/authenticator/confirm", url.Values{"csrf": {token}, "pending": {Hidden(p.Body).Get("pending")},
		"code": {enrCode(t, newKey, time.Now())}})
	if p.Status != http.StatusOK {
		t.Fatalf("confirm the new authenticator: %d\n%.400s", p.Status, p.Body)
	}
	ntMail(t, sink, addr, "your authenticator app was replaced", 1, secrets, "on your account page")

	// The operator: a password set, the authenticator removed and set up
	// again at the next sign-in, the address changed (the notice goes to
	// the old address, and names the new one only in part).
	third := "quartz lantern meadow"
	secrets = append(secrets, third)
	CLI(t, s.DB, third+"\n", "user", "set-password", u.Name, "--password-stdin")
	ntMail(t, sink, addr, "your password was changed", 2, secrets, "by your administrator")
	u.Password = third
	CLI(t, s.DB, "", "user", "reset-totp", u.Name)
	ntMail(t, sink, addr, "your authenticator app was removed", 1, secrets)
	enrolled, _ := enrEnroll(t, s, c, &u)
	secrets = append(secrets, enrolled)
	ntMail(t, sink, addr, "an authenticator app was set up", 1, secrets)
	CLI(t, s.DB, "", "user", "update", u.Name, "--email", "nora.new@example.org")
	ntMail(t, sink, addr, "e-mail address of your account was changed", 1, secrets, "n…@example.org", "by your administrator")

	// Every notification rode its event's audit row.
	events := map[string]int{}
	for _, e := range atkAudit(t, s.DB, u.Name) {
		events[e.Event]++
	}
	for ev, n := range map[string]int{"recovery_codes_regenerated": 1, "recovery_code_used": 3, "login_completed": 4, "second_factor_failed_after_password": 3,
		"lock_started": 1, "password_changed": 1, "recovery_codes_renewed": 1, "totp_replaced": 1, "password_set": 1, "totp_reset": 1,
		"totp_enrolled": 1, "user_updated": 1} {
		if events[ev] < n {
			t.Errorf("audit %s: %d, want at least %d (%v)", ev, events[ev], n, events)
		}
	}
	// Nothing went to the new, unverified address but what it asked for.
	if n := len(sink.To("nora.new@example.org", "")); n != 0 {
		t.Errorf("%d mails to the new, unverified address", n)
	}
}

// TestNotificationMustChange, through the real binary and the SMTP sink:
// the password a user must choose at sign-in (the operator's
// --must-change) and a recovery code spent on the account page have their
// notices too, like every change of item 4.
func TestNotificationMustChange(t *testing.T) {
	s, sink := rsMailServer(t)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "mia", "correct horse battery", "--email-verified")
	const temp, chosen = "velvet compass seven", "marble orchard three"
	CLI(t, s.DB, temp+"\n", "user", "set-password", u.Name, "--password-stdin", "--must-change")
	ntMail(t, sink, "mia@example.com", "your password was changed", 1, []string{temp}, "by your administrator")
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	acPasswordPage(t, f, u.Name, temp)
	form := f.B.Get(f.TOTP(u.Code(time.Now())).Location)
	for i := 0; form.Status == http.StatusSeeOther && i < 3; i++ {
		form = f.B.Get(form.Location)
	}
	f.Form = Hidden(form.Body)
	if p := f.B.Post(s.URL+"/login/new-password", url.Values{"id": {f.Form.Get("id")}, "csrf": {f.Form.Get("csrf")}, "new": {chosen}, "repeat": {chosen}}); p.Status != http.StatusSeeOther {
		t.Fatalf("the new password: %d", p.Status)
	}
	ntMail(t, sink, "mia@example.com", "your password was changed", 2, []string{temp, chosen}, "at sign-in, as your administrator required")

	// A recovery code proves it is the user on the account page (the
	// sign-in's TOTP step is spent): its notice says how many are left.
	u.Password = chosen
	codes := lgRecoveryCodes(t, s, u)
	b := NewBrowser(t, "")
	rp := NewRP(t, s, c)
	lgLogin(t, s, c, rp, b, u, codes[0], "openid")
	// The sink keeps delivery order, and a batch is in id order: wait for
	// this notice before the next one is made.
	ntMail(t, sink, "mia@example.com", "a recovery code was used", 1, codes, "Recovery codes left: 9")
	page := b.Get(s.URL + "/account")
	for i := 0; page.Status/100 == 3 && i < 6; i++ {
		page = b.Get(page.Location)
	}
	token := Hidden(page.Body).Get("csrf")
	if p := b.Post(s.URL+"/account/verify", url.Values{"csrf": {token}, "recovery_code": {codes[1]}}); p.Status != http.StatusSeeOther && p.Status != http.StatusOK {
		t.Fatalf("reauthenticate with a recovery code: %d", p.Status)
	}
	ntMail(t, sink, "mia@example.com", "a recovery code was used", 2, codes, "Recovery codes left: 8")
}
