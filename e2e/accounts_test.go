package e2e

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The operator's account lifecycle (issue 12) against the real binary:
// a disabled account, a password the operator set with --must-change.

// acPasswordPage submits the password step and, on success, loads the
// next page of the flow into f.Form.
func acPasswordPage(t *testing.T, f *Flow, user, pw string) Page {
	t.Helper()
	p := f.Password(user, pw)
	if p.Status != http.StatusSeeOther {
		return p
	}
	next := f.B.Get(p.Location)
	f.Form = Hidden(next.Body)
	return next
}

// TestDisabledAccount: a disabled account answers exactly as an enabled
// one until both factors are proven (the wrong password's status, page
// and time; the right password's TOTP page), so disabling reveals nothing
// to someone without the factors. After both it is told the account is
// disabled, with the way back to the application, and gets no code: not
// at the callback, not through a session. Enabling lets it in again.
func TestDisabledAccount(t *testing.T) {
	s := StartServer(t, "--password-max-failures", "90", "--password-hard-limit", "100")
	c := AddClient(t, s.DB, "app")
	dis := AddUser(t, s.DB, "dora", "correct horse battery")
	on := AddUser(t, s.DB, "olga", "correct horse battery")
	out := CLI(t, s.DB, "", "user", "disable", dis.Name)
	if !strings.Contains(out, "Disabled dora") {
		t.Fatalf("disable: %s", out)
	}

	// Wrong passwords: the same status and page; the same time within
	// 10 % (median of paired differences, up to three rounds of 20).
	fd := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	fo := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	var pageD, pageO string
	check := func(p Page, user string, page *string) {
		t.Helper()
		if p.Status != http.StatusUnauthorized {
			t.Fatalf("%s: wrong password: %d, want 401", user, p.Status)
		}
		norm := atkNormalise(p.Body, user)
		if *page == "" {
			*page = norm
		} else if norm != *page {
			t.Fatalf("the page for %s varies", user)
		}
	}
	var rounds []string
	passed := false
	for r := 0; r < 3 && !passed; r++ {
		var dd, dk []time.Duration
		for i := 0; i < 20; i++ {
			first, second := fd, fo
			if i%2 == 1 {
				first, second = fo, fd
			}
			t1 := time.Now()
			p1 := first.Password(map[*Flow]string{fd: dis.Name, fo: on.Name}[first], "wrong password")
			d1 := time.Since(t1)
			t2 := time.Now()
			p2 := second.Password(map[*Flow]string{fd: dis.Name, fo: on.Name}[second], "wrong password")
			d2 := time.Since(t2)
			pd, po, td, to := p1, p2, d1, d2
			if first == fo {
				pd, po, td, to = p2, p1, d2, d1
			}
			check(pd, dis.Name, &pageD)
			check(po, on.Name, &pageO)
			dd, dk = append(dd, td-to), append(dk, to)
		}
		rel := math.Abs(float64(atkMedian(dd))) / float64(atkMedian(dk))
		rounds = append(rounds, fmt.Sprintf("%.1f%%", 100*rel))
		passed = rel <= 0.10
	}
	t.Logf("wrong password, disabled against enabled: paired median difference per round %v", rounds)
	if !passed {
		t.Fatalf("a disabled account's wrong password takes a different time: %v", rounds)
	}
	if pageD != pageO {
		t.Fatal("a disabled account's wrong-password page differs from an enabled account's")
	}
	CLI(t, s.DB, "", "user", "unlock", dis.Name)

	// The right password: the TOTP page, as for anyone.
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	page := acPasswordPage(t, f, dis.Name, dis.Password)
	if page.Status != http.StatusOK || !strings.Contains(page.Body, `autocomplete="one-time-code"`) {
		t.Fatalf("disabled account, right password: %d, want the TOTP page\n%s", page.Status, page.Body)
	}
	// Both factors: told, with the way back, and no code.
	p := f.TOTP(dis.Code(time.Now()))
	if p.Status != http.StatusForbidden || !strings.Contains(p.Body, "This account is disabled") ||
		!strings.Contains(p.Body, "error=access_denied") {
		t.Fatalf("disabled account after both factors: %d\n%s", p.Status, p.Body)
	}
	// The callback, followed on the provider, ends at the same page.
	cb := f.B.Get(s.URL + "/authorize/callback?id=" + url.QueryEscape(f.Form.Get("id")))
	for i := 0; cb.Status == http.StatusSeeOther && strings.HasPrefix(cb.Location, s.URL) && i < 3; i++ {
		cb = f.B.Get(cb.Location)
	}
	if cb.Status != http.StatusForbidden || strings.Contains(cb.Location, "code=") || !strings.Contains(cb.Body, "This account is disabled") {
		t.Fatalf("callback of the disabled account's sign-in: %d %s", cb.Status, cb.Location)
	}
	for _, ck := range f.B.Jar.Cookies(mustParse(t, s.URL)) {
		if strings.Contains(ck.Name, "idp_session") {
			t.Fatal("an SSO session was opened for a disabled account")
		}
	}
	events := map[string]bool{}
	for _, e := range atkAudit(t, s.DB, dis.Name) {
		events[e.Event] = true
	}
	if !events["user_disabled"] || !events["login_refused"] {
		t.Fatalf("audit: %v, want user_disabled and login_refused", events)
	}

	// Enabled again: the password leads to the second factor as before.
	CLI(t, s.DB, "", "user", "enable", dis.Name)
	f = NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	if page := acPasswordPage(t, f, dis.Name, dis.Password); !strings.Contains(page.Body, `autocomplete="one-time-code"`) {
		t.Fatalf("enabled again: %d\n%s", page.Status, page.Body)
	}
}

// TestMustChangePassword: an operator sets a password with --must-change.
// The user signs in with it and both factors, and gets the form to choose
// their own instead of a code: the callback sends them back to it. The
// form refuses two different entries, a blocklisted password and the
// current one, each saying why; a good one issues the code at once, the
// operator's password no longer works and the new one does.
func TestMustChangePassword(t *testing.T) {
	s := StartServer(t)
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	u := AddUser(t, s.DB, "mona", "correct horse battery")
	const temp = "velvet compass seven"
	CLI(t, s.DB, temp+"\n", "user", "set-password", u.Name, "--password-stdin", "--must-change")
	if p := NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Password(u.Name, u.Password); p.Status != http.StatusUnauthorized {
		t.Fatalf("the password before the operator's: %d, want 401", p.Status)
	}

	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	acPasswordPage(t, f, u.Name, temp)
	p := f.TOTP(u.Code(time.Now()))
	form := f.B.Get(p.Location)
	for i := 0; form.Status == http.StatusSeeOther && i < 3; i++ {
		form = f.B.Get(form.Location)
	}
	if form.Status != http.StatusOK || !strings.Contains(form.Body, `autocomplete="new-password"`) {
		t.Fatalf("after both factors: %d, want the new-password form\n%s", form.Status, form.Body)
	}
	f.Form = Hidden(form.Body)
	id := f.Form.Get("id")
	// No code meanwhile: the callback sends the browser back to the form.
	cb := f.B.Get(s.URL + "/authorize/callback?id=" + url.QueryEscape(id))
	if cb.Status != http.StatusSeeOther || strings.Contains(cb.Location, "code=") || !strings.Contains(cb.Location, "/login/") {
		t.Fatalf("callback while the password must change: %d %s", cb.Status, cb.Location)
	}
	post := func(pw, repeat string) Page {
		return f.B.Post(s.URL+"/login/new-password", url.Values{"id": {id}, "csrf": {f.Form.Get("csrf")}, "new": {pw}, "repeat": {repeat}})
	}
	for _, tc := range []struct{ pw, repeat, want string }{
		{"marble orchard three", "marble orchard thre", "are not the same"},
		{"iloveyou1", "iloveyou1", "list of common and breached passwords"},
		{"xx-mona-2026-xx", "xx-mona-2026-xx", "contains your username"},
		{"short", "short", "too short"},
		{temp, temp, "other than the one you have now"},
	} {
		r := post(tc.pw, tc.repeat)
		if r.Status != http.StatusBadRequest || !strings.Contains(r.Body, tc.want) || !strings.Contains(r.Body, `role="alert"`) {
			t.Fatalf("new password %q: %d, want 400 saying %q\n%s", tc.pw, r.Status, tc.want, r.Body)
		}
	}
	const chosen = "marble orchard three"
	tok, err := rp.Exchange(f, f.CodeFrom(f.Follow(post(chosen, chosen))))
	if err != nil {
		t.Fatalf("the code after the new password: %v", err)
	}
	rp.VerifyID(t, tok, f)
	if p := NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Password(u.Name, temp); p.Status != http.StatusUnauthorized {
		t.Fatalf("the operator's password afterwards: %d, want 401", p.Status)
	}
	if p := NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Password(u.Name, chosen); p.Status != http.StatusSeeOther {
		t.Fatalf("the chosen password: %d, want 303", p.Status)
	}
	if out := CLI(t, s.DB, "", "user", "show", u.Name); strings.Contains(out, "must be changed") {
		t.Fatalf("still marked must-change:\n%s", out)
	}
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestDisableEndsWhatTheAccountHeld: disabling an account that is signed
// in kills at once what it held: its refresh token (offline_access too),
// its access token at userinfo, and its SSO session (prompt=none gets
// login_required, no code).
func TestDisableEndsWhatTheAccountHeld(t *testing.T) {
	s := StartServer(t)
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	u := AddUser(t, s.DB, "dina", "correct horse battery")
	b := NewBrowser(t, "")
	f := b.StartFlow(s, c, AuthParams{Scope: "openid offline_access"})
	tok, err := rp.Exchange(f, f.Login(u))
	if err != nil || tok.RefreshToken == "" {
		t.Fatalf("exchange: %v (refresh token %t)", err, tok != nil && tok.RefreshToken != "")
	}
	if !lgAccessLive(t, s, tok) || !lgSessionWorks(t, b, s, c) {
		t.Fatal("the sign-in's grants do not work before disabling")
	}
	CLI(t, s.DB, "", "user", "disable", u.Name)
	st, body := confRefresh(t, s, c, tok.RefreshToken)
	confWantInvalidGrant(t, "refresh after disabling", st, body)
	if lgAccessLive(t, s, tok) {
		t.Error("the access token still works at userinfo after disabling")
	}
	au, _ := AuthorizeURL(s, c, AuthParams{Extra: url.Values{"prompt": {"none"}}})
	p := atkNoCodeFollow(t, b, s, b.Get(au), "prompt=none after disabling")
	if !strings.Contains(p.Location, "error=login_required") {
		t.Fatalf("prompt=none after disabling: %d %s, want login_required", p.Status, p.Location)
	}
}

// TestDisabledAccountCannotEnroll: an account waiting to enrol at login is
// disabled (its first password may have leaked). Its password still leads
// to the enrolment page, as for an enabled account, but confirming an
// authenticator there is refused with the disabled page and plants
// nothing, so that enabling it later does not admit whoever tried (review
// of issue 12, F2).
func TestDisabledAccountCannotEnroll(t *testing.T) {
	s := StartServer(t)
	c := AddClient(t, s.DB, "app")
	u := enrAddUserAtLogin(t, s.DB, "nell", "correct horse battery")
	CLI(t, s.DB, "", "user", "disable", u.Name)
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	page := enrPasswordToEnroll(t, f, u)
	p := enrPost(f, "/login/enroll", url.Values{"code": {enrCode(t, enrSecret(t, page.Body), time.Now())}})
	if p.Status != http.StatusForbidden || !strings.Contains(p.Body, "This account is disabled") {
		t.Fatalf("enrolment confirmed by a disabled account: %d\n%s", p.Status, p.Body)
	}
	if out := CLI(t, s.DB, "", "user", "show", u.Name); !strings.Contains(out, "totp:       false") {
		t.Fatalf("a disabled account has an authenticator:\n%s", out)
	}
}

// TestMustChangeWithPromptNone: prompt=none of a must-change account with
// an SSO session gets interaction_required at the application, not the
// form (OpenID Connect Core §3.1.2.1; review of issue 12, F5).
func TestMustChangeWithPromptNone(t *testing.T) {
	s := StartServer(t)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "mira", "correct horse battery")
	const temp = "velvet compass seven"
	CLI(t, s.DB, temp+"\n", "user", "set-password", u.Name, "--password-stdin", "--must-change")
	b := NewBrowser(t, "")
	f := b.StartFlow(s, c, AuthParams{})
	acPasswordPage(t, f, u.Name, temp)
	form := b.Get(f.TOTP(u.Code(time.Now())).Location)
	for i := 0; form.Status == http.StatusSeeOther && i < 3; i++ {
		form = b.Get(form.Location)
	}
	if form.Status != http.StatusOK || !strings.Contains(form.Body, `autocomplete="new-password"`) {
		t.Fatalf("after both factors: %d, want the new-password form", form.Status)
	}
	au, _ := AuthorizeURL(s, c, AuthParams{Extra: url.Values{"prompt": {"none"}}})
	p := atkNoCodeFollow(t, b, s, b.Get(au), "prompt=none while the password must change")
	if !strings.Contains(p.Location, "error=interaction_required") {
		t.Fatalf("prompt=none while the password must change: %d %s\n%s", p.Status, p.Location, p.Body)
	}
}

// acAccountSignIn signs u in to /account in browser b (password and TOTP
// code at) and returns the account page's form token.
func acAccountSignIn(t *testing.T, s *Server, b *Browser, u User, pw string, at time.Time) string {
	t.Helper()
	p := b.Get(s.URL + "/account")
	if p.Status != http.StatusSeeOther {
		t.Fatalf("/account: %d", p.Status)
	}
	p = b.Get(p.Location) // the harness made it absolute
	if p.Status != http.StatusFound || !strings.Contains(p.Location, "/login/") {
		t.Fatalf("authorize for the account page: %d %s", p.Status, p.Location)
	}
	f := &Flow{B: b, S: s, LoginURL: p.Location}
	f.Form = Hidden(b.Get(p.Location).Body)
	acPasswordPage(t, f, u.Name, pw)
	p = f.TOTP(u.Code(at))
	for i := 0; i < 6 && p.Status/100 == 3; i++ {
		p = b.Get(p.Location)
	}
	if p.Status != http.StatusOK || !strings.Contains(p.Body, "Signed in as "+u.Name) {
		t.Fatalf("the account page after the sign-in: %d\n%.300s", p.Status, p.Body)
	}
	return Hidden(p.Body).Get("csrf")
}

// TestAccountPageAttacks, through the real binary: a cross-site post to
// every account action is refused, whatever it carries; a post without
// the page's token is refused; and a session ended from the page, with
// everything it was given (an offline refresh token too), fails at once,
// as does prompt=none in that browser.
func TestAccountPageAttacks(t *testing.T) {
	s := StartServer(t)
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	u := AddUser(t, s.DB, "tess", "correct horse battery")
	codes := lgRecoveryCodes(t, s, u)
	victim := NewBrowser(t, "")
	tok := lgLogin(t, s, c, rp, victim, u, codes[0], "openid offline_access")
	if tok.RefreshToken == "" || !lgSessionWorks(t, victim, s, c) {
		t.Fatal("the other browser's grant does not work before")
	}
	b := NewBrowser(t, "")
	token := acAccountSignIn(t, s, b, u, u.Password, time.Now())

	for _, path := range []string{"/account/verify", "/account/password", "/account/sessions/end", "/account/recovery-codes",
		"/account/authenticator", "/account/authenticator/confirm", "/account/email", "/account/email/link"} {
		form := url.Values{"csrf": {token}, "which": {"all"}, "current": {u.Password}, "new": {"marble orchard three"},
			"repeat": {"marble orchard three"}, "code": {u.Code(time.Now())}}
		req, err := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		req.Header.Set("Origin", "https://evil.example")
		if p := b.do(req); p.Status != http.StatusForbidden {
			t.Errorf("cross-site post to %s: %d, want 403", path, p.Status)
		}
		form.Del("csrf")
		if p := b.Post(s.URL+path, form); p.Status != http.StatusForbidden {
			t.Errorf("post to %s without the page's token: %d, want 403", path, p.Status)
		}
	}
	if !lgSessionWorks(t, b, s, c) {
		t.Fatal("the forged posts ended this browser's session")
	}

	// End the other browser's session from the page: its offline refresh
	// token fails at once, and so does prompt=none there.
	page := b.Get(s.URL + "/account")
	m := regexp.MustCompile(`name="session" value="([^"]+)"`).FindStringSubmatch(page.Body)
	if m == nil {
		t.Fatalf("no session to end on the page:\n%.500s", page.Body)
	}
	if p := b.Post(s.URL+"/account/sessions/end", url.Values{"csrf": {token}, "which": {"one"}, "session": {m[1]}}); p.Status != http.StatusOK {
		t.Fatalf("end the other session: %d", p.Status)
	}
	st, body := confRefresh(t, s, c, tok.RefreshToken)
	confWantInvalidGrant(t, "the ended session's offline refresh token", st, body)
	if lgSessionWorks(t, victim, s, c) {
		t.Error("prompt=none still works in the browser whose session was ended")
	}
}

// TestAccountPageReauthentication, through the real binary with a short
// window: a change after the window asks for the second factor again;
// wrong codes there count and lock like a sign-in's second step (429 once
// --totp-max-failures is reached, and the right code at a sign-in waits
// too); the lock ends the session it came from; the page then tells the
// events in plain words; a blocklisted new password is refused on the
// page as at set-password.
func TestAccountPageReauthentication(t *testing.T) {
	s := StartServer(t, "--reauth-window", "2s", "--totp-max-failures", "3", "--totp-lock", "2s", "--totp-lock-max", "2s")
	u := AddUser(t, s.DB, "rhea", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	codes := lgRecoveryCodes(t, s, u)
	b := NewBrowser(t, "")
	token := acAccountSignIn(t, s, b, u, u.Password, time.Now())
	change := func(next string) Page {
		return b.Post(s.URL+"/account/password", url.Values{"csrf": {token}, "current": {u.Password}, "new": {next}, "repeat": {next}})
	}
	if p := change("iloveyou1"); p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "common and breached") {
		t.Fatalf("a blocklisted new password on the page: %d", p.Status)
	}
	time.Sleep(2100 * time.Millisecond) // past the 2 s window
	if p := change("marble orchard three"); p.Status != http.StatusForbidden || !strings.Contains(p.Body, "Confirm it is you first") {
		t.Fatalf("a change after the window: %d", p.Status)
	}
	var got []int
	for i := 0; i < 4; i++ {
		got = append(got, b.Post(s.URL+"/account/verify", url.Values{"csrf": {token}, "code": {"000000"}}).Status)
	}
	// The third wrong code locks the account's second factor, as at a
	// sign-in, and is this session's third in a row, so the session ends
	// (reviews A-F3, C-F3: a session in the wrong hands must not drive the
	// owner to a hard lock); the fourth post is signed out.
	if want := []int{401, 401, 401, 403}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("wrong reauthentication codes: %v, want %v", got, want)
	}
	if st := atkShow(t, s.DB, u.Name).F("totp"); st.Failures != 3 {
		t.Fatalf("the TOTP counter after the account page's wrong codes: %+v, want 3 failures", st)
	}
	// Locked on the sign-in's counter: the right code waits at a sign-in.
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	acPasswordPage(t, f, u.Name, u.Password)
	if p := f.TOTP(u.Code(time.Now().Add(30 * time.Second))); p.Status != http.StatusTooManyRequests {
		t.Fatalf("the right code at a sign-in while locked: %d, want 429", p.Status)
	}
	// Once the lock is over, the page says what happened in plain words,
	// and does not say someone knows the password: none was typed for
	// these codes (review A-F2).
	time.Sleep(2100 * time.Millisecond) // past the 2 s lock
	b = NewBrowser(t, "")
	lgLogin(t, s, c, rp, b, u, codes[0], "openid") // a recovery code: this step's TOTP code is spent
	page := b.Get(s.URL + "/account")
	for i := 0; i < 6 && page.Status/100 == 3; i++ {
		page = b.Get(page.Location)
	}
	if page.Status != http.StatusOK || !strings.Contains(page.Body, "Signed in as "+u.Name) {
		t.Fatalf("the account page after the lock: %d", page.Status)
	}
	for _, want := range []string{"Sign-in paused for a while", "Signed out on the account page after wrong codes"} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("the account page's events lack %q", want)
		}
	}
	if strings.Contains(page.Body, "after the right password") || strings.Contains(page.Body, "Another security event") {
		t.Errorf("the account page's events after the lock:\n%s", page.Body)
	}
}

// TestStolenSessionCookie, through the real binary: the SSO session cookie
// copied alone into another browser (a leaked Cookie header value, a
// cookie exported by name) gets nothing there: no account page, no action
// even with the page's token, no code by prompt=none, and the owner's
// session is untouched. The control at the end copies the browser's
// binding cookie too and gets in, which is what binding means and where
// it stops (docs/THREAT-MODEL.md R-W8): a thief with the whole cookie jar
// is, to any server, the same browser.
func TestStolenSessionCookie(t *testing.T) {
	s := StartServer(t)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "vera", "correct horse battery")
	victim := NewBrowser(t, "")
	token := acAccountSignIn(t, s, victim, u, u.Password, time.Now())
	su := mustParse(t, s.URL)
	var session, binding []*http.Cookie
	for _, ck := range victim.Jar.Cookies(su) {
		switch {
		case strings.Contains(ck.Name, "idp_session"):
			session = append(session, ck)
		case strings.Contains(ck.Name, "idp_bind"):
			binding = append(binding, ck)
		}
	}
	if len(session) != 1 {
		t.Fatalf("session cookies in the victim's browser: %d, want 1", len(session))
	}

	thief := NewBrowser(t, "127.0.0.7")
	thief.Jar.SetCookies(su, session)
	if lgSessionWorks(t, thief, s, c) {
		t.Error("prompt=none with the stolen session cookie alone gave a code")
	}
	p := thief.Get(s.URL + "/account")
	if p.Status == http.StatusOK || strings.Contains(p.Body, "Signed in as") {
		t.Errorf("the account page with the stolen session cookie alone: %d\n%.300s", p.Status, p.Body)
	}
	for _, path := range []string{"/account/sessions/end", "/account/verify", "/account/password", "/account/recovery-codes", "/account/authenticator"} {
		form := url.Values{"csrf": {token}, "which": {"all"}, "current": {u.Password}, "new": {"marble orchard three"},
			"repeat": {"marble orchard three"}, "code": {u.Code(time.Now())}}
		if p := thief.Post(s.URL+path, form); p.Status != http.StatusForbidden && p.Status != http.StatusSeeOther {
			t.Errorf("post to %s with the stolen session cookie alone and the page's token: %d, want 403 or a sign-in", path, p.Status)
		} else if p.Status == http.StatusSeeOther && !strings.Contains(p.Location, "/authorize") {
			t.Errorf("post to %s with the stolen session cookie alone: sent to %s", path, p.Location)
		}
	}
	if !lgSessionWorks(t, victim, s, c) {
		t.Fatal("the thief's tries ended the owner's session")
	}
	if p := victim.Get(s.URL + "/account"); p.Status != http.StatusOK || !strings.Contains(p.Body, "Signed in as "+u.Name) {
		t.Fatalf("the owner's account page after the thief's tries: %d", p.Status)
	}

	// The control: the binding cookie too.
	if len(binding) != 1 {
		t.Fatalf("binding cookies in the victim's browser: %d, want 1", len(binding))
	}
	thief.Jar.SetCookies(su, binding)
	if !lgSessionWorks(t, thief, s, c) {
		t.Error("the session and its binding cookie together do not work in another browser: the refusal above was not the binding's")
	}
}
