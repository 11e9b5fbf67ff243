package e2e

import (
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// rsMailServer starts the provider with the SMTP sink and args.
func rsMailServer(t *testing.T, args ...string) (*Server, *Sink) {
	t.Helper()
	sink := StartSink(t)
	s := StartServer(t, append([]string{"--smtp-url", sink.URL(), "--smtp-from", "idp@example.com", "--mail-interval", "100ms"}, args...)...)
	return s, sink
}

// rsLink is the one link to path in a mail's text part; it checks the
// token is 256 bits (43 base64url characters) and the HTML part links
// the same URL.
func rsLink(t *testing.T, m SinkMail, path string) string {
	t.Helper()
	re := regexp.MustCompile(`https?://[^\s"<>]+` + regexp.QuoteMeta(path) + `\?t=([A-Za-z0-9_-]+)`)
	all := re.FindAllStringSubmatch(m.Part("text/plain"), -1)
	if len(all) != 1 || len(all[0][1]) != 43 {
		t.Fatalf("links to %s in the mail: %q", path, all)
	}
	if !strings.Contains(m.Part("text/html"), `href="`+all[0][0]+`"`) {
		t.Fatalf("the HTML part does not link %s", all[0][0])
	}
	return all[0][0]
}

// rsVerified reads email and email_verified from `idp user show --json`.
func rsVerified(t *testing.T, db, name string) (string, bool) {
	t.Helper()
	var u struct {
		Email    string `json:"email"`
		Verified bool   `json:"email_verified"`
	}
	if err := json.Unmarshal([]byte(CLI(t, db, "", "user", "show", name, "--json")), &u); err != nil {
		t.Fatal(err)
	}
	return u.Email, u.Verified
}

// rsAlter changes the last character of a link's token.
func rsAlter(link string) string {
	last := link[len(link)-1]
	c := byte('A')
	if last == 'A' {
		c = 'B'
	}
	return link[:len(link)-1] + string(c)
}

// TestVerifyEmail, through the real binary and the SMTP sink: the account
// page sends a verification link (256 bits, once per 5 minutes); opening
// it changes nothing until its button is pressed; then the address is
// verified, email_verified says so in the ID token, and the link is
// spent; an altered link does nothing. A new address set on the page is
// unverified, gets its own link, and the old address is told; a link
// another account would use for an address already verified is refused,
// as is the operator's --email-verified for it.
func TestVerifyEmail(t *testing.T) {
	s, sink := rsMailServer(t)
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	u := AddUser(t, s.DB, "vic", "correct horse battery") // vic@example.com, unverified
	codes := lgRecoveryCodes(t, s, u)                     // before any session: making them ends sessions
	b := NewBrowser(t, "")
	token := acAccountSignIn(t, s, b, u, u.Password, time.Now())
	page := b.Get(s.URL + "/account")
	if !strings.Contains(page.Body, "not confirmed") || !strings.Contains(page.Body, `action="/account/email/link"`) {
		t.Fatalf("the account page does not offer a link for the unverified address:\n%.600s", page.Body)
	}
	if p := b.Post(s.URL+"/account/email/link", url.Values{"csrf": {token}}); p.Status != http.StatusOK {
		t.Fatalf("send a link: %d", p.Status)
	}
	if p := b.Post(s.URL+"/account/email/link", url.Values{"csrf": {token}}); p.Status != http.StatusTooManyRequests {
		t.Fatalf("a second link at once: %d, want 429", p.Status)
	}
	m := ntMail(t, sink, "vic@example.com", "confirm your e-mail address", 1, []string{u.Password, u.Key.Secret()}, "within 24 hours")
	link := rsLink(t, m, "/account/email/verify")
	time.Sleep(300 * time.Millisecond)
	if n := len(sink.To("vic@example.com", "confirm your e-mail address")); n != 1 {
		t.Fatalf("%d verification mails after two requests, want 1", n)
	}

	// Another browser, not signed in (a mail client, a scanner): GET shows
	// the button and changes nothing.
	other := NewBrowser(t, "")
	p := other.Get(link)
	if p.Status != http.StatusOK || !strings.Contains(p.Body, "vic@example.com") || !strings.Contains(p.Body, `action="/account/email/verify"`) {
		t.Fatalf("the link's page: %d\n%.400s", p.Status, p.Body)
	}
	if _, verified := rsVerified(t, s.DB, u.Name); verified {
		t.Fatal("opening the link verified the address")
	}
	if p := other.Post(s.URL+"/account/email/verify", url.Values{"t": {rsAlter(strings.SplitN(link, "?t=", 2)[1])}}); p.Status != http.StatusGone {
		t.Fatalf("an altered link: %d, want 410", p.Status)
	}
	tok := strings.SplitN(link, "?t=", 2)[1]
	if p := other.Post(s.URL+"/account/email/verify", url.Values{"t": {tok}}); p.Status != http.StatusOK || !strings.Contains(p.Body, "is confirmed") {
		t.Fatalf("use the link: %d\n%.400s", p.Status, p.Body)
	}
	if _, verified := rsVerified(t, s.DB, u.Name); !verified {
		t.Fatal("the link did not verify the address")
	}
	if p := other.Post(s.URL+"/account/email/verify", url.Values{"t": {tok}}); p.Status != http.StatusGone {
		t.Fatalf("the link used again: %d, want 410", p.Status)
	}
	// email_verified tells the truth now (the sign-in's code step is
	// spent, so a recovery code).
	tokens := lgLogin(t, s, c, rp, NewBrowser(t, ""), u, codes[0], "openid email")
	if claims := rsIDClaims(t, tokens.Extra("id_token").(string)); claims["email_verified"] != nil && claims["email_verified"] != true {
		t.Fatalf("the ID token after the verification: %v", claims)
	}
	if st, info, _ := confUserinfo(t, s, "get", tokens.AccessToken); st != http.StatusOK || info["email_verified"] != true || info["email"] != "vic@example.com" {
		t.Fatalf("userinfo after the verification: %d %v", st, info)
	}

	// A new address on the page (within the reauthentication window of
	// the sign-in): unverified, its own link, a notice to the old one.
	next := "vic.new@example.org"
	// Not without the current password: the address is where a reset
	// link goes (review G, F7).
	for _, pw := range []string{"", "wrong password here"} {
		if p := b.Post(s.URL+"/account/email", url.Values{"csrf": {token}, "email": {next}, "current": {pw}}); p.Status != http.StatusUnauthorized {
			t.Fatalf("an address change with current password %q: %d, want 401", pw, p.Status)
		}
	}
	if addr, _ := rsVerified(t, s.DB, u.Name); addr != "vic@example.com" {
		t.Fatalf("the address after refused changes: %s", addr)
	}
	if p := b.Post(s.URL+"/account/email", url.Values{"csrf": {token}, "email": {next}, "current": {u.Password}}); p.Status != http.StatusOK {
		t.Fatalf("change the address: %d", p.Status)
	}
	if addr, verified := rsVerified(t, s.DB, u.Name); addr != next || verified {
		t.Fatalf("after the change: %s verified=%t", addr, verified)
	}
	ntMail(t, sink, "vic@example.com", "e-mail address of your account was changed", 1, nil, "v…@example.org", "on your account page")
	link2 := rsLink(t, ntMail(t, sink, next, "confirm your e-mail address", 1, nil), "/account/email/verify")
	for _, bad := range []string{"vic.new@example.org\r\nBcc: evil@example.net", "a@example.com, evil@example.net", "Vic <v@example.com>"} {
		if p := b.Post(s.URL+"/account/email", url.Values{"csrf": {token}, "email": {bad}, "current": {u.Password}}); p.Status != http.StatusBadRequest {
			t.Errorf("address %q: %d, want 400", bad, p.Status)
		}
	}

	// Another account cannot take a verified address: not by its link,
	// not by the operator's flag.
	w := AddUser(t, s.DB, "wyn", "correct horse battery")
	CLI(t, s.DB, "", "user", "update", w.Name, "--email", "vic@example.com", "--issuer", s.URL) // vic's old address, free now
	CLI(t, s.DB, "", "user", "update", u.Name, "--email-verified=true")                         // the operator verifies vic's new one
	if _, errOut, err := CLIResult(s.DB, "", "user", "update", w.Name, "--email", strings.ToUpper(next), "--email-verified=true"); err == nil ||
		!strings.Contains(errOut, "another account has this e-mail address verified") {
		t.Fatalf("the operator verifying an address another account has: %v %s", err, errOut)
	}
	CLI(t, s.DB, "", "user", "update", w.Name, "--email", strings.ToUpper(next), "--issuer", s.URL)
	// The sink matches addresses case-insensitively: vic's link was the
	// first to this mailbox, wyn's is the second.
	wlink := rsLink(t, ntMail(t, sink, strings.ToUpper(next), "confirm your e-mail address", 2, nil), "/account/email/verify")
	if wlink == link2 {
		t.Fatal("wyn's link is vic's")
	}
	if p := other.Post(s.URL+"/account/email/verify", url.Values{"t": {strings.SplitN(wlink, "?t=", 2)[1]}}); p.Status != http.StatusConflict {
		t.Fatalf("verifying an address another account has verified: %d, want 409", p.Status)
	}
	// vic's own link to the new address was voided by nothing, but the
	// operator verified it already: it still works, once.
	if p := other.Post(s.URL+"/account/email/verify", url.Values{"t": {strings.SplitN(link2, "?t=", 2)[1]}}); p.Status != http.StatusOK {
		t.Fatalf("vic's link to the new address: %d", p.Status)
	}
	events := map[string]int{}
	for _, e := range atkAudit(t, s.DB, "") {
		events[e.Event]++
	}
	for _, ev := range []string{"email_verification_sent", "email_verified", "email_changed"} {
		if events[ev] == 0 {
			t.Errorf("no %s event: %v", ev, events)
		}
	}
}

// rsForgot posts the forgot form from b and returns the page and how
// long it took.
func rsForgot(b *Browser, s *Server, identifier string) (Page, time.Duration) {
	start := time.Now()
	p := b.Post(s.URL+"/login/forgot", url.Values{"identifier": {identifier}})
	return p, time.Since(start)
}

// rsResetLink asks the forgot form for a reset link by identifier and
// returns the one link mailed to name@example.com.
func rsResetLink(t *testing.T, s *Server, sink *Sink, identifier, name string) string {
	t.Helper()
	if p, _ := rsForgot(NewBrowser(t, ""), s, identifier); p.Status != http.StatusOK {
		t.Fatalf("forgot %s: %d", identifier, p.Status)
	}
	return rsLink(t, ntMail(t, sink, name+"@example.com", "reset your password", 1, nil), "/login/reset")
}

// rsReset posts the reset form.
func rsReset(b *Browser, s *Server, link string, fields url.Values) Page {
	fields.Set("t", strings.SplitN(link, "?t=", 2)[1])
	return b.Post(s.URL+"/login/reset", fields)
}

// TestPasswordReset, through the real binary and the SMTP sink: the
// password page links "Forgot your password?"; the form mails a reset
// link (256 bits) to the verified address; the link page wants the second
// factor: without one nothing changes, wrong codes count and lock on the
// account's TOTP counter, the one a sign-in's code step claims (the right
// code then waits too: 429), an altered link is refused; with a fresh code and a new password the
// password is reset, every session and refresh token of the account ends,
// the password lock is lifted, the "your password was changed" notice
// arrives, and the link is spent.
func TestPasswordReset(t *testing.T) {
	s, sink := rsMailServer(t, "--totp-max-failures", "3", "--totp-lock", "2s", "--totp-lock-max", "2s",
		"--password-max-failures", "2", "--password-lock", "1h", "--password-lock-max", "1h")
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	u := AddUser(t, s.DB, "rae", "correct horse battery", "--email-verified")
	addr := "rae@example.com"

	// A browser signed in before, with an offline refresh token.
	codes := lgRecoveryCodes(t, s, u)
	before := NewBrowser(t, "")
	tok := lgLogin(t, s, c, rp, before, u, codes[0], "openid offline_access")
	// Someone guessing the password locks it (on a browser without a
	// device cookie, so the shared counter).
	for i := 0; i < 3; i++ {
		NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Password(u.Name, "wrong guess number "+fmt.Sprint(i))
	}
	if st := atkShow(t, s.DB, u.Name).F("password"); !st.Locked {
		t.Fatalf("the password is not locked before the reset: %+v", st)
	}

	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	login := f.B.Get(f.LoginURL)
	if !strings.Contains(login.Body, `href="/login/forgot?id=`) {
		t.Fatal("the password page does not link the forgot form")
	}
	b := NewBrowser(t, "")
	if p, _ := rsForgot(b, s, u.Name); p.Status != http.StatusOK || !strings.Contains(p.Body, "If an account matches") {
		t.Fatalf("forgot: %d\n%.400s", p.Status, p.Body)
	}
	secrets := []string{u.Password, u.Key.Secret()}
	m := ntMail(t, sink, addr, "reset your password", 1, secrets, "within 30 minutes", "You will need your authenticator app")
	link := rsLink(t, m, "/login/reset")
	if p := b.Get(link); p.Status != http.StatusOK || !strings.Contains(p.Body, `name="code"`) || !strings.Contains(p.Body, u.Name) {
		t.Fatalf("the link's page: %d", p.Status)
	}
	next := "marble orchard three"
	pw := url.Values{"new": {next}, "repeat": {next}}
	// Without a second factor: refused, nothing counted, nothing changed.
	if p := rsReset(b, s, link, pw); p.Status != http.StatusBadRequest {
		t.Fatalf("a reset without a code: %d, want 400", p.Status)
	}
	if p := rsReset(b, s, rsAlter(link), url.Values{"new": {next}, "repeat": {next}, "code": {u.Code(time.Now())}}); p.Status != http.StatusGone {
		t.Fatalf("an altered link: %d, want 410", p.Status)
	}
	if p := b.Get(rsAlter(link)); p.Status != http.StatusGone {
		t.Fatalf("an altered link's page: %d, want 410", p.Status)
	}
	// Wrong codes count on the sign-in's counter and lock it.
	var got []int
	for i := 0; i < 3; i++ {
		got = append(got, rsReset(b, s, link, url.Values{"new": {next}, "repeat": {next}, "code": {"000000"}}).Status)
	}
	got = append(got, rsReset(b, s, link, url.Values{"new": {next}, "repeat": {next}, "code": {u.Code(time.Now())}}).Status)
	if fmt.Sprint(got) != "[401 401 401 429]" {
		t.Fatalf("three wrong codes and a right one on the reset page: %v, want [401 401 401 429]", got)
	}
	if st := atkShow(t, s.DB, u.Name).F("totp"); st.Failures != 3 || !st.Locked {
		t.Fatalf("the TOTP counter after wrong codes on the reset page: %+v", st)
	}
	ntMail(t, sink, addr, "locked after wrong codes", 1, secrets)
	if n := len(sink.To(addr, "someone entered your password")); n != 0 {
		t.Fatalf("%d 'wrong code after your password' mails: no password was typed", n)
	}
	time.Sleep(2100 * time.Millisecond) // past the lock

	// The right code and a new password.
	p := rsReset(b, s, link, url.Values{"new": {next}, "repeat": {next}, "code": {u.Code(time.Now())}})
	if p.Status != http.StatusOK || !strings.Contains(p.Body, "is changed") {
		t.Fatalf("the reset: %d\n%.400s", p.Status, p.Body)
	}
	ntMail(t, sink, addr, "your password was changed", 1, append(secrets, next), "through a password reset link")
	if lgSessionWorks(t, before, s, c) {
		t.Error("the session from before the reset still works")
	}
	st, body := confRefresh(t, s, c, tok.RefreshToken)
	confWantInvalidGrant(t, "the offline refresh token from before the reset", st, body)
	if st := atkShow(t, s.DB, u.Name).F("password"); st.Locked || st.Failures != 0 {
		t.Fatalf("the password lock after the reset: %+v", st)
	}
	if p := NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Password(u.Name, u.Password); p.Status != http.StatusUnauthorized {
		t.Errorf("the old password after the reset: %d", p.Status)
	}
	u.Password = next
	nf := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	acPasswordPage(t, nf, u.Name, next)
	// The link is spent.
	if p := rsReset(NewBrowser(t, ""), s, link, url.Values{"new": {"quartz lantern meadow"}, "repeat": {"quartz lantern meadow"}, "recovery_code": {codes[1]}}); p.Status != http.StatusGone {
		t.Fatalf("the link used again: %d, want 410", p.Status)
	}
	events := map[string]int{}
	for _, e := range atkAudit(t, s.DB, u.Name) {
		events[e.Event]++
	}
	if events["password_reset_requested"] != 1 || events["reset_code_failed"] != 3 || events["password_reset"] != 1 {
		t.Fatalf("audit: %v", events)
	}
}

// TestPasswordResetLinks, through the real binary: a link that expired, a
// link of an account disabled since, and a link the password outlived
// give a clear page and change nothing; a recovery code works in place of
// the app and is spent; a flood of requests for one account, from many
// addresses, mails one link.
func TestPasswordResetLinks(t *testing.T) {
	s, sink := rsMailServer(t)
	c := AddClient(t, s.DB, "app")
	users := map[string]User{}
	for _, n := range []string{"ada", "bea", "cid", "dot"} {
		u := AddUser(t, s.DB, n, "correct horse battery", "--email-verified")
		users[n] = u
	}
	request := func(who string) string { return rsResetLink(t, s, sink, who+"@example.com", who) }
	next := url.Values{"new": {"marble orchard three"}, "repeat": {"marble orchard three"}}
	withCode := func(u User) url.Values {
		v := url.Values{"code": {u.Code(time.Now())}}
		for k, vs := range next {
			v[k] = vs
		}
		return v
	}
	// Expired: the link's row is moved 31 minutes into the past.
	link := request("ada")
	rsExec(t, s.DB, `UPDATE mail_links SET created_at = created_at - 1860, expires_at = expires_at - 1860`)
	if p := rsReset(NewBrowser(t, ""), s, link, withCode(users["ada"])); p.Status != http.StatusGone || !strings.Contains(p.Body, "used, expired or not valid") {
		t.Fatalf("an expired link: %d", p.Status)
	}
	// Disabled since.
	link = request("bea")
	CLI(t, s.DB, "", "user", "disable", "bea")
	if p := rsReset(NewBrowser(t, ""), s, link, withCode(users["bea"])); p.Status != http.StatusGone || strings.Contains(p.Body, "disabled") {
		t.Fatalf("a disabled account's link: %d, want 410 and no word of the account's state", p.Status)
	}
	// The operator set a password after the link was sent.
	link = request("cid")
	time.Sleep(1100 * time.Millisecond) // the change's second is after the link's
	CLI(t, s.DB, "quartz lantern meadow\n", "user", "set-password", "cid", "--password-stdin")
	if p := rsReset(NewBrowser(t, ""), s, link, withCode(users["cid"])); p.Status != http.StatusGone {
		t.Fatalf("a link the password outlived: %d, want 410", p.Status)
	}
	for _, n := range []string{"ada", "bea"} {
		if p := NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Password(n, "marble orchard three"); p.Status == http.StatusSeeOther {
			t.Errorf("%s's password changed by a refused link", n)
		}
	}
	// A recovery code in place of the app, spent.
	codes := lgRecoveryCodes(t, s, users["dot"])
	link = request("dot")
	v := url.Values{"recovery_code": {codes[0]}}
	for k, vs := range next {
		v[k] = vs
	}
	if p := rsReset(NewBrowser(t, ""), s, link, v); p.Status != http.StatusOK {
		t.Fatalf("a reset with a recovery code: %d", p.Status)
	}
	ntMail(t, sink, "dot@example.com", "a recovery code was used", 1, codes, "Recovery codes left: 9")

	// A flood: 40 requests for ada, from 20 loopback addresses, by name
	// and by address: one mail (the per-account limit: ada's link above
	// was moved 31 minutes back, out of it), and every answer the same.
	before := len(sink.To("ada@example.com", "reset your password"))
	bodies := make([]Page, 40)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ { // eight at a time, bounded
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(bodies); i += 8 {
				who := "ada"
				if i%2 == 1 {
					who = "ADA@example.com"
				}
				bodies[i], _ = rsForgot(NewBrowser(t, fmt.Sprintf("127.0.0.%d", 10+i%20)), s, who)
			}
		}()
	}
	wg.Wait()
	for i, p := range bodies {
		if p.Status != http.StatusOK || p.Body != bodies[0].Body {
			t.Fatalf("flood answer %d: %d, or a different page", i, p.Status)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(sink.To("ada@example.com", "reset your password")) - before; n != 1 {
		t.Fatalf("a flood of 40 requests mailed %d links, want 1", n)
	}
}

// rsIDClaims are the claims of a (verified) ID token.
func rsIDClaims(t *testing.T, idToken string) map[string]any {
	t.Helper()
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		t.Fatalf("ID token %q", idToken)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// rsExec runs one statement on the SQLite database db.
func rsExec(t *testing.T, db, query string) {
	t.Helper()
	conn, err := sql.Open("sqlite", "file:"+db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Exec(query); err != nil {
		t.Fatal(err)
	}
}

// TestResetEnumeration (issue 13: the enumeration bound): the forgot form
// answers a real account with a verified address (by name and by
// address), an account without one, a disabled account and names and
// addresses of no account with the same status and the same page, in the
// same time (medians within 10 %), and mails only the real verified
// accounts. Not parallel: it measures latency.
func TestResetEnumeration(t *testing.T) {
	const samples = 8
	s, sink := rsMailServer(t)
	for _, n := range []string{"kay", "lou"} {
		AddUser(t, s.DB, n, "correct horse battery", "--email-verified")
	}
	AddUser(t, s.DB, "mo", "correct horse battery") // unverified
	AddUser(t, s.DB, "ned", "correct horse battery", "--email-verified")
	CLI(t, s.DB, "", "user", "disable", "ned")
	ids := []string{"kay", "lou@example.com", "mo", "ned", "nobody", "nobody@example.com"}
	b := NewBrowser(t, "")
	var page string
	rsForgot(b, s, "warm-up")
	// round measures every identifier samples times, the order rotating,
	// and returns the medians and their spread. Random load on 2 shared
	// cores can push one round past 10 %; up to three are measured and
	// one within 10 % passes, as in TestAttackEnumeration: a systematic
	// difference shows in every round.
	round := func() (map[string]time.Duration, float64) {
		times := map[string][]time.Duration{}
		for i := 0; i < samples; i++ {
			for j := range ids {
				id := ids[(i+j)%len(ids)]
				p, d := rsForgot(b, s, id)
				if p.Status != http.StatusOK {
					t.Fatalf("%s: %d", id, p.Status)
				}
				if page == "" {
					page = p.Body
				} else if p.Body != page {
					t.Fatalf("the answer for %s differs:\n%s\n---\n%s", id, p.Body, page)
				}
				times[id] = append(times[id], d)
			}
		}
		med := map[string]time.Duration{}
		lo, hi := time.Hour, time.Duration(0)
		for id, ds := range times {
			med[id] = atkMedian(ds)
			lo, hi = min(lo, med[id]), max(hi, med[id])
		}
		return med, float64(hi-lo) / float64(lo)
	}
	var rounds []string
	var rel float64
	for r := 0; r < 3; r++ {
		var med map[string]time.Duration
		med, rel = round()
		rounds = append(rounds, fmt.Sprintf("%v (%.1f%%)", med, 100*rel))
		if rel <= 0.10 {
			break
		}
	}
	if rel > 0.10 || math.IsNaN(rel) {
		t.Errorf("forgot form medians differ by more than 10%% in every round: %v", rounds)
	}
	time.Sleep(500 * time.Millisecond)
	got := map[string]int{}
	for _, m := range sink.Mails() {
		got[strings.Join(m.To, ",")]++
	}
	if len(got) != 2 || got["kay@example.com"] != 1 || got["lou@example.com"] != 1 {
		t.Fatalf("mails sent: %v, want one each to kay and lou (the limit keeps later ones)", got)
	}
	t.Logf("%d samples per identifier and round: one page, one status; medians %v", samples, rounds)
}

// TestPasswordResetRace, through the real binary: one reset link posted
// eight times at once, with the current code and with different recovery
// codes, resets the password once; the others change nothing (410: the
// link was used; 401: the code's step was spent; 429: the claims counted
// before them reached the lock).
func TestPasswordResetRace(t *testing.T) {
	s, sink := rsMailServer(t, "--password-max-failures", "20")
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "tia", "correct horse battery", "--email-verified")
	codes := lgRecoveryCodes(t, s, u)
	link := rsResetLink(t, s, sink, u.Name, u.Name)
	status := make([]int, 8)
	passwords := make([]string, 8)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range status {
		passwords[i] = fmt.Sprintf("marble orchard %d three", i)
		v := url.Values{"new": {passwords[i]}, "repeat": {passwords[i]}}
		if i%2 == 0 {
			v.Set("code", u.Code(time.Now()))
		} else {
			v.Set("recovery_code", codes[i])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			status[i] = rsReset(NewBrowser(t, ""), s, link, v).Status
		}()
	}
	close(start)
	wg.Wait()
	won := -1
	for i, st := range status {
		switch st {
		case http.StatusOK:
			if won >= 0 {
				t.Fatalf("two resets with one link: %v", status)
			}
			won = i
		case http.StatusGone, http.StatusUnauthorized, http.StatusTooManyRequests:
			// Used meanwhile, a code already spent, or refused by the
			// claims the others counted first (claim before check).
		default:
			t.Fatalf("statuses %v", status)
		}
	}
	if won < 0 {
		t.Fatalf("no reset won: %v", status)
	}
	for i, pw := range passwords {
		p := NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Password(u.Name, pw)
		if (i == won) != (p.Status == http.StatusSeeOther) {
			t.Errorf("password %d after the race (winner %d): %d", i, won, p.Status)
		}
	}
	t.Logf("eight resets at once with one link: %v", status)
}

// TestEmailChangeFlood, through the real binary and the SMTP sink: an
// account changing its address again and again mails at most 5
// verification links an hour; a change past that is refused and not
// made (review H, F3: 25 changes sent 25 links, 2750 in 15 s).
func TestEmailChangeFlood(t *testing.T) {
	s, sink := rsMailServer(t)
	u := AddUser(t, s.DB, "flo", "correct horse battery")
	b := NewBrowser(t, "")
	token := acAccountSignIn(t, s, b, u, u.Password, time.Now())
	var got []int
	for i := 0; i < 8; i++ {
		got = append(got, b.Post(s.URL+"/account/email", url.Values{"csrf": {token}, "email": {fmt.Sprintf("victim+%d@victim.example", i)}, "current": {u.Password}}).Status)
	}
	if fmt.Sprint(got) != "[200 200 200 200 200 429 429 429]" {
		t.Fatalf("eight address changes: %v, want five, then 429", got)
	}
	if addr, _ := rsVerified(t, s.DB, u.Name); addr != "victim+4@victim.example" {
		t.Fatalf("the address after the refused changes: %s", addr)
	}
	time.Sleep(500 * time.Millisecond)
	if got := sink.Wait(5, 10*time.Second); len(got) != 5 {
		t.Fatalf("%d mails, want the 5 links", len(got))
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(sink.Mails()); n != 5 {
		t.Fatalf("%d mails after eight changes, want 5", n)
	}
}

// TestPasswordResetLinkTries, through the real binary: one reset link
// takes five codes, each counted before it is checked; the sixth, even
// the right one, gets the "used, expired or not valid" page and changes
// nothing (review H, F4: the mailbox alone drove the TOTP counter to its
// hard lock with one link).
func TestPasswordResetLinkTries(t *testing.T) {
	s, sink := rsMailServer(t, "--totp-max-failures", "20", "--totp-hard-limit", "30")
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "eve", "correct horse battery", "--email-verified")
	link := rsResetLink(t, s, sink, u.Name, u.Name)
	b := NewBrowser(t, "")
	var got []int
	for i := 0; i < 5; i++ {
		got = append(got, rsReset(b, s, link, url.Values{"new": {"marble orchard three"}, "repeat": {"marble orchard three"}, "code": {"000000"}}).Status)
	}
	got = append(got, rsReset(b, s, link, url.Values{"new": {"marble orchard three"}, "repeat": {"marble orchard three"}, "code": {u.Code(time.Now())}}).Status)
	if fmt.Sprint(got) != "[401 401 401 401 401 410]" {
		t.Fatalf("five wrong codes and the right one with one link: %v", got)
	}
	if p := b.Get(link); p.Status != http.StatusGone {
		t.Fatalf("the link's page after its tries: %d", p.Status)
	}
	if st := atkShow(t, s.DB, u.Name).F("totp"); st.Failures != 5 {
		t.Fatalf("the TOTP counter: %+v, want the 5 wrong codes (a spent link claims nothing)", st)
	}
	if p := NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Password(u.Name, "marble orchard three"); p.Status == http.StatusSeeOther {
		t.Fatal("the password changed")
	}
}

// TestPasswordResetLockedLink, through the real binary: while the
// account's second step is locked, posts with one reset link are refused
// and spend the link's tries too, so a link writes at most five rows to
// the audit trail, locked or not (review G, I4).
func TestPasswordResetLockedLink(t *testing.T) {
	s, sink := rsMailServer(t, "--totp-max-failures", "2", "--totp-lock", "1h", "--totp-lock-max", "1h")
	u := AddUser(t, s.DB, "lee", "correct horse battery", "--email-verified")
	link := rsResetLink(t, s, sink, u.Name, u.Name)
	b := NewBrowser(t, "")
	var got []int
	for i := 0; i < 8; i++ {
		got = append(got, rsReset(b, s, link, url.Values{"new": {"marble orchard three"}, "repeat": {"marble orchard three"}, "code": {"000000"}}).Status)
	}
	if fmt.Sprint(got) != "[401 401 429 429 429 410 410 410]" {
		t.Fatalf("eight posts with one link, locked after two: %v", got)
	}
	if n := atkCount(atkAudit(t, s.DB, u.Name), "locked_refused"); n > 3 {
		t.Fatalf("%d locked_refused rows from one link, want at most its 3 tries left", n)
	}
}

// TestPasswordResetLinkVoided, through the real binary: a reset link dies
// when its address stops being verified, even if it is verified again,
// and when the operator removes the authenticator; both then look like
// any dead link (review I, F1 and F3: the first still reset the password,
// and nobody was told; the second answered 409 "no authenticator").
func TestPasswordResetLinkVoided(t *testing.T) {
	s, sink := rsMailServer(t)
	for _, n := range []string{"uma", "val"} {
		AddUser(t, s.DB, n, "correct horse battery", "--email-verified")
	}
	uma := rsResetLink(t, s, sink, "uma", "uma")
	CLI(t, s.DB, "", "user", "update", "uma", "--email-verified=false")
	if p := NewBrowser(t, "").Get(uma); p.Status != http.StatusGone {
		t.Fatalf("a link to an address no longer verified: %d, want 410", p.Status)
	}
	CLI(t, s.DB, "", "user", "update", "uma", "--email-verified=true")
	if p := rsReset(NewBrowser(t, ""), s, uma, url.Values{"new": {"marble orchard three"}, "repeat": {"marble orchard three"}, "recovery_code": {"aaaaa-bbbbb-ccccc-ddddd-eeeee"}}); p.Status != http.StatusGone {
		t.Fatalf("the link after the address was verified again: %d, want 410", p.Status)
	}
	val := rsResetLink(t, s, sink, "val", "val")
	CLI(t, s.DB, "", "user", "reset-totp", "val")
	for _, p := range []Page{NewBrowser(t, "").Get(val), rsReset(NewBrowser(t, ""), s, val, url.Values{"new": {"marble orchard three"}, "repeat": {"marble orchard three"}, "code": {"123456"}})} {
		if p.Status != http.StatusGone || !strings.Contains(p.Body, "used, expired or not valid") {
			t.Fatalf("a link of an account without an authenticator: %d, want the dead link's 410", p.Status)
		}
	}
}
