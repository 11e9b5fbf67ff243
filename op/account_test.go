package op

import (
	"bytes"
	"context"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/account"
	"github.com/totp-idp/idp/op/login"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/op/secret"
	"github.com/totp-idp/idp/op/totp"
	"github.com/totp-idp/idp/storage"
)

// accountClock is a test clock for the account page's tests: after the
// fixture's authenticator was made on the real clock (a session older than
// its authenticator is worth nothing), 5 s into a TOTP step.
func accountClock() *testClock {
	return &testClock{t: time.Now().UTC().Add(time.Minute).Truncate(30 * time.Second).Add(5 * time.Second)}
}

// accountGet fetches u with the browser c without following redirects.
func accountGet(t *testing.T, c *http.Client, u string) (int, string, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// TestAccountSignIn: /account without a session goes through the
// provider's own authorization request (the same password and TOTP steps
// as any application's), comes back to /account/callback, and shows the
// account page; with the session it shows at once. A callback whose state
// is not this browser's, or whose code was already used, shows nothing.
func TestAccountSignIn(t *testing.T) {
	e := newTestEnv(t, nil)
	f := &inFlow{e: e, c: e.browser()}
	status, loc, _ := accountGet(t, f.c, e.ts.URL+"/account")
	if status != http.StatusSeeOther || !strings.HasPrefix(loc, "/authorize?") || !strings.Contains(loc, "client_id=idp-account") ||
		!strings.Contains(loc, "code_challenge_method=S256") {
		t.Fatalf("/account without a session: %d %s", status, loc)
	}
	status, loc, _ = accountGet(t, f.c, e.ts.URL+loc)
	if status != http.StatusFound || !strings.Contains(loc, "/login/") {
		t.Fatalf("authorize for the account page: %d %s", status, loc)
	}
	f.load(t, e.ts.URL+loc)
	if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"correct horse"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("password: %d", r.StatusCode)
	}
	f.load(t, e.ts.URL+login.URL(f.form.Get("id")))
	r, _ := f.postPage(t, "/login/totp", url.Values{"code": {e.annCode(t, time.Now())}})
	loc = r.Header.Get("Location")
	// Follow the provider's redirects to the account callback.
	var callback string
	for i := 0; i < 5 && callback == ""; i++ {
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		status, next, _ := accountGet(t, f.c, e.ts.URL+u.RequestURI())
		if status/100 != 3 {
			t.Fatalf("redirect %d: %d", i, status)
		}
		if strings.Contains(next, "/account/callback") {
			callback = next
		}
		loc = next
	}
	if callback == "" {
		t.Fatal("never came back to /account/callback")
	}
	cb, err := url.Parse(callback)
	if err != nil {
		t.Fatal(err)
	}
	// The account client's code is not redeemable at the token endpoint,
	// even with its PKCE verifier (review of the account page, F4).
	var verifier string
	for _, ck := range f.c.Jar.Cookies(mustURL(t, e.ts.URL)) {
		if ck.Name == "idp_account_flow" {
			_, verifier, _ = strings.Cut(ck.Value, ".")
		}
	}
	tr, err := e.browser().PostForm(e.ts.URL+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {"idp-account"},
		"code": {cb.Query().Get("code")}, "code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:1/account/callback"}})
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := io.ReadAll(tr.Body)
	tr.Body.Close()
	if verifier == "" || tr.StatusCode != http.StatusBadRequest || !strings.Contains(string(tb), "invalid_grant") {
		t.Fatalf("the account client's code at the token endpoint (verifier %t): %d %s", verifier != "", tr.StatusCode, tb)
	}
	// Another browser presenting this code and state gets nothing.
	if status, _, body := accountGet(t, e.browser(), e.ts.URL+cb.RequestURI()); status != http.StatusBadRequest || strings.Contains(body, "Signed in as") {
		t.Fatalf("the callback in another browser: %d", status)
	}
	status, loc, _ = accountGet(t, f.c, e.ts.URL+cb.RequestURI())
	if status != http.StatusSeeOther || loc != "/account" {
		t.Fatalf("account callback: %d %s", status, loc)
	}
	status, _, body := accountGet(t, f.c, e.ts.URL+"/account")
	if status != http.StatusOK || !strings.Contains(body, "Signed in as ann.") || !strings.Contains(body, "(this browser)") {
		t.Fatalf("the account page: %d\n%s", status, body)
	}
	// The same callback again: its code is used, its state cookie gone.
	if status, _, _ := accountGet(t, f.c, e.ts.URL+cb.RequestURI()); status != http.StatusBadRequest {
		t.Fatalf("the callback replayed: %d", status)
	}
	// With the session the page shows at once; a stranger is sent to sign in.
	if status, _, _ := accountGet(t, f.c, e.ts.URL+"/account"); status != http.StatusOK {
		t.Fatalf("the account page with a session: %d", status)
	}
	if status, loc, _ := accountGet(t, e.browser(), e.ts.URL+"/account"); status != http.StatusSeeOther || !strings.HasPrefix(loc, "/authorize?") {
		t.Fatalf("the account page without a session: %d %s", status, loc)
	}
}

var accountCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// accountSignIn signs ann in to /account in a new browser at the injected
// time and returns the browser and the account page's form token.
func accountSignIn(t *testing.T, e *testEnv, clk *testClock) (*inFlow, string) {
	t.Helper()
	return accountSignInWith(t, e, clk, "correct horse")
}

func accountSignInWith(t *testing.T, e *testEnv, clk *testClock, pw string) (*inFlow, string) {
	t.Helper()
	f := &inFlow{e: e, c: e.browser()}
	status, loc, _ := accountGet(t, f.c, e.ts.URL+"/account")
	if status != http.StatusSeeOther {
		t.Fatalf("/account: %d", status)
	}
	if _, loc, _ = accountGet(t, f.c, e.ts.URL+loc); !strings.Contains(loc, "/login/") {
		t.Fatalf("authorize: %s", loc)
	}
	f.load(t, e.ts.URL+loc)
	if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {pw}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("password: %d", r.StatusCode)
	}
	f.load(t, e.ts.URL+login.URL(f.form.Get("id")))
	r, tb := f.postPage(t, "/login/totp", url.Values{"code": {e.annCode(t, clk.now())}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("totp: %d\n%s", r.StatusCode, tb)
	}
	loc = r.Header.Get("Location")
	for i := 0; i < 6; i++ {
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		status, next, body := accountGet(t, f.c, e.ts.URL+u.RequestURI())
		if status == http.StatusOK {
			m := accountCSRF.FindStringSubmatch(body)
			if !strings.Contains(body, "Signed in as ann.") || m == nil {
				t.Fatalf("redirect %d to %s: account page without its form (pw %q):\n%.300s", i, loc, pw, body)
			}
			return f, m[1]
		}
		if status/100 != 3 {
			t.Fatalf("sign-in redirect %d: %d\n%s", i, status, body)
		}
		loc = next
	}
	t.Fatal("never reached the account page")
	return nil, ""
}

// accountPost posts an account form as the page would (same origin).
func accountPost(t *testing.T, f *inFlow, path string, form url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.e.ts.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := f.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAccountActions: the account page's changes need the page's own
// token (a cross-site post and a post with another session's token are
// refused), and a second factor proven within the window; proving it
// again counts on the sign-in's TOTP counter. Changing the password needs
// the current one, follows the rules, signs every other browser out and
// keeps this one; the old password stops working. Ending sessions ends
// exactly the ones chosen.
func TestAccountActions(t *testing.T) {
	ctx := context.Background()
	// After the fixture's authenticator was made (on the real clock): a
	// session older than its authenticator is worth nothing.
	clk := accountClock()
	e := newTestEnv(t, func(c *Config) { c.Now = clk.now })
	mine, token := accountSignIn(t, e, clk)
	clk.add(30 * time.Second)
	other, otherToken := accountSignIn(t, e, clk)

	// Forgeries: a cross-site post, another session's token.
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+account.PasswordPath, strings.NewReader(url.Values{"csrf": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := mine.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site post: %d, want 403", resp.StatusCode)
	}
	if status, _ := accountPost(t, mine, account.EndPath, url.Values{"csrf": {otherToken}, "which": {"others"}}); status != http.StatusForbidden {
		t.Fatalf("a post with another session's token: %d, want 403", status)
	}

	// The window: after it, changes ask for the second factor again.
	clk.add(account.DefaultReauthWindow + time.Second)
	pw := func(current, next, repeat string) (int, string) {
		return accountPost(t, mine, account.PasswordPath, url.Values{"csrf": {token}, "current": {current}, "new": {next}, "repeat": {repeat}})
	}
	if status, body := pw("correct horse", "marble orchard three", "marble orchard three"); status != http.StatusForbidden || !strings.Contains(body, "Confirm it is you first") {
		t.Fatalf("a change after the window: %d\n%s", status, body)
	}
	// A wrong code counts on the TOTP counter like a sign-in's.
	ann, _ := e.store.UserByUsername(ctx, "ann")
	before := totpState(t, e.store, ann.ID).Failures
	alerts := e.auditCount(t, "second_factor_failed_after_password")
	if status, _ := accountPost(t, mine, account.VerifyPath, url.Values{"csrf": {token}, "code": {"000000"}}); status != http.StatusUnauthorized {
		t.Fatalf("a wrong reauthentication code: %d, want 401", status)
	}
	if after := totpState(t, e.store, ann.ID).Failures; after != before+1 {
		t.Fatalf("TOTP failures %d → %d, want one more", before, after)
	}
	// No password was typed for it: not the "someone knows your
	// password" alert (review A-F2).
	if n := e.auditCount(t, "second_factor_failed_after_password"); n != alerts {
		t.Fatalf("a wrong reauthentication code raised the after-password alert (%d → %d)", alerts, n)
	}
	clk.add(30 * time.Second)
	if status, _ := accountPost(t, mine, account.VerifyPath, url.Values{"csrf": {token}, "code": {e.annCode(t, clk.now())}}); status != http.StatusSeeOther {
		t.Fatalf("the right reauthentication code: %d, want 303", status)
	}
	// The same code again is a replay, not a proof.
	if status, _ := accountPost(t, mine, account.VerifyPath, url.Values{"csrf": {token}, "code": {e.annCode(t, clk.now())}}); status != http.StatusUnauthorized {
		t.Fatalf("the same reauthentication code again: %d, want 401", status)
	}

	// The password change.
	devicesBefore, err := e.store.Devices(ctx, ann.ID, clk.now())
	if err != nil || len(devicesBefore) != 2 {
		t.Fatalf("devices before the change: %d (%v), want this browser's and the other's", len(devicesBefore), err)
	}
	if status, body := pw("wrong horse", "marble orchard three", "marble orchard three"); status != http.StatusUnauthorized || !strings.Contains(body, "not your current password") {
		t.Fatalf("a wrong current password: %d", status)
	}
	if status, body := pw("correct horse", "iloveyou1", "iloveyou1"); status != http.StatusBadRequest || !strings.Contains(body, "common and breached") {
		t.Fatalf("a blocklisted new password: %d\n%s", status, body)
	}
	if status, body := pw("correct horse", "marble orchard three", "marble orchard three"); status != http.StatusOK || !strings.Contains(body, "Your password is changed") {
		t.Fatalf("the change: %d\n%s", status, body)
	}
	if status, _, _ := accountGet(t, other.c, e.ts.URL+"/account"); status != http.StatusSeeOther {
		t.Fatalf("the other browser after the change: %d, want to be sent to sign in", status)
	}
	if status, _, _ := accountGet(t, mine.c, e.ts.URL+"/account"); status != http.StatusOK {
		t.Fatalf("this browser after the change: %d, want its page", status)
	}
	// This browser stays remembered; the other one is forgotten (issue
	// 12: "every other session and remembered device"; review A-F4).
	withCookies := httptest.NewRequest(http.MethodGet, e.ts.URL+"/account", nil)
	for _, ck := range mine.c.Jar.Cookies(mustURL(t, e.ts.URL)) {
		withCookies.AddCookie(ck)
	}
	if ds, _ := e.store.Devices(ctx, ann.ID, clk.now()); len(ds) != 1 ||
		!bytes.Equal(ds[0].IDHash, e.srv.guard.PresentedDevice(withCookies, ann.ID)) {
		t.Fatalf("devices after the change: %d, want only this browser's", len(ds))
	}
	f := startFlow(t, e)
	if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"correct horse"}}); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the old password after the change: %d, want 401", r.StatusCode)
	}
	f = startFlow(t, e)
	if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"marble orchard three"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("the new password: %d, want 303", r.StatusCode)
	}

	// Ending sessions: a third browser, ended by its handle.
	clk.add(30 * time.Second)
	third, _ := accountSignInWith(t, e, clk, "marble orchard three")
	status, body := accountPost(t, mine, account.EndPath, url.Values{"csrf": {token}, "which": {"others"}})
	if status != http.StatusOK || !strings.Contains(body, "signed out") {
		t.Fatalf("end the others: %d\n%s", status, body)
	}
	if status, _, _ := accountGet(t, third.c, e.ts.URL+"/account"); status != http.StatusSeeOther {
		t.Fatalf("the third browser after 'others': %d", status)
	}
	status, _ = accountPost(t, mine, account.EndPath, url.Values{"csrf": {token}, "which": {"all"}})
	if status != http.StatusSeeOther {
		t.Fatalf("end everywhere: %d", status)
	}
	if status, _, _ := accountGet(t, mine.c, e.ts.URL+"/account"); status != http.StatusSeeOther {
		t.Fatalf("this browser after 'all': %d, want to be sent to sign in", status)
	}
}

var accountCodeRe = regexp.MustCompile(`[0-9a-z]{5}(?:-[0-9a-z]{5}){3}-[0-9a-z]{6}`)

// TestAccountRenewCodes: new recovery codes from the account page are
// shown once; the old ones stop working, a new one proves the second
// factor, and another browser's session ends.
func TestAccountRenewCodes(t *testing.T) {
	ctx := context.Background()
	clk := accountClock()
	e := newTestEnv(t, func(c *Config) { c.Now = clk.now })
	_, old, _, err := e.admin.RegenerateRecoveryCodes(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	mine, token := accountSignIn(t, e, clk)
	clk.add(30 * time.Second)
	other, _ := accountSignIn(t, e, clk)
	// Without the current password: refused (a stolen cookie in the
	// window must not be enough for a new second factor).
	_, _, page := accountGet(t, mine.c, e.ts.URL+"/account")
	gm := accountGenerationRe.FindStringSubmatch(page)
	if gm == nil {
		t.Fatal("no generation in the renewal form")
	}
	if status, _ := accountPost(t, mine, account.CodesPath, url.Values{"csrf": {token}, "current": {"wrong horse"}, "generation": gm[1:2]}); status != http.StatusUnauthorized {
		t.Fatalf("renew with a wrong current password: %d, want 401", status)
	}
	status, body := accountPost(t, mine, account.CodesPath, url.Values{"csrf": {token}, "current": {"correct horse"}, "generation": gm[1:2]})
	area := body
	if i, j := strings.Index(body, "<textarea"), strings.Index(body, "</textarea>"); i >= 0 && j > i {
		area = body[i:j]
	}
	codes := accountCodeRe.FindAllString(area, -1)
	if status != http.StatusOK || len(codes) != 10 {
		t.Fatalf("renew: %d with %d codes\n%s", status, len(codes), body)
	}
	if status, _, _ := accountGet(t, other.c, e.ts.URL+"/account"); status != http.StatusSeeOther {
		t.Fatalf("the other browser after the renewal: %d", status)
	}
	// The same form sent again (a resend, a double click) replaces
	// nothing: the codes just shown stay the ones that work (review A-F1).
	if status, _ := accountPost(t, mine, account.CodesPath, url.Values{"csrf": {token}, "current": {"correct horse"}, "generation": gm[1:2]}); status != http.StatusConflict {
		t.Fatalf("the renewal form sent again: %d, want 409", status)
	}
	clk.add(account.DefaultReauthWindow + time.Second)
	if status, _ := accountPost(t, mine, account.VerifyPath, url.Values{"csrf": {token}, "recovery_code": {old[0]}}); status != http.StatusUnauthorized {
		t.Fatalf("an old recovery code: %d, want 401", status)
	}
	if status, _ := accountPost(t, mine, account.VerifyPath, url.Values{"csrf": {token}, "recovery_code": {codes[0]}}); status != http.StatusSeeOther {
		t.Fatalf("a new recovery code: %d, want 303", status)
	}
}

var (
	accountSecretRe     = regexp.MustCompile(`<code class="secret"[^>]*>([A-Z2-7 ]+)</code>`)
	accountPendingRe    = regexp.MustCompile(`name="pending" value="([^"]+)"`)
	accountGenerationRe = regexp.MustCompile(`name="generation" value="([0-9]+)"`)
)

// accountOffer asks for a new authenticator on f's account page and
// returns its key and the sealed offer the confirmation posts back.
func accountOffer(t *testing.T, f *inFlow, token string) ([]byte, string) {
	t.Helper()
	status, body := accountPost(t, f, account.AuthenticatorPath, url.Values{"csrf": {token}, "current": {"correct horse"}})
	ms, mp := accountSecretRe.FindStringSubmatch(body), accountPendingRe.FindStringSubmatch(body)
	if status != http.StatusOK || ms == nil || mp == nil {
		t.Fatalf("new authenticator page: %d", status)
	}
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ReplaceAll(ms[1], " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return key, mp[1]
}

// TestAccountConfirmRace: one offer confirmed three times at once (a double
// click), and two offers confirmed at once, each end with one new
// authenticator: one 200 with its recovery codes, the others 409, and the
// key that answered 200 is the one that works (review of issue 12, A-F1:
// before, two answered 200 and one of them showed a dead key or dead
// codes).
func TestAccountConfirmRace(t *testing.T) {
	clk := accountClock()
	e := newTestEnv(t, func(c *Config) { c.Now = clk.now })
	mine, token := accountSignIn(t, e, clk)
	offer := func() ([]byte, string) { return accountOffer(t, mine, token) }
	race := func(keys [][]byte, pendings []string) []int {
		statuses := make([]int, len(keys))
		var wg sync.WaitGroup
		for i := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i], _ = accountPost(t, mine, account.ConfirmPath, url.Values{"csrf": {token}, "pending": {pendings[i]},
					"code": {totp.Code(keys[i], totp.Step(clk.now()))}})
			}()
		}
		wg.Wait()
		return statuses
	}
	winners := func(statuses []int) []int {
		var won []int
		for i, s := range statuses {
			if s == http.StatusOK {
				won = append(won, i)
			} else if s != http.StatusConflict && s != http.StatusBadRequest && s != http.StatusUnauthorized {
				t.Errorf("a losing confirmation: %d", s)
			}
		}
		return won
	}
	ann, err := e.store.UserByUsername(context.Background(), "ann")
	if err != nil {
		t.Fatal(err)
	}
	key, pending := offer()
	clk.add(30 * time.Second)
	// Three at once: a session has three tries between proofs (a fourth
	// at once would end it; TestAccountWrongCodesEndOnlyTheirSession).
	if won := winners(race([][]byte{key, key, key}, []string{pending, pending, pending})); len(won) != 1 {
		t.Fatalf("one offer confirmed three times at once: %d answered 200, want 1", len(won))
	}
	// The losers' codes were right: their claims are given back, so the
	// owner's failure count and budget pay nothing (review C-F1).
	if st := totpState(t, e.store, ann.ID); st.Failures != 0 || st.BudgetLevel != 0 {
		t.Fatalf("TOTP counter after a double click: %d failures, budget %v, want nothing", st.Failures, st.BudgetLevel)
	}
	clk.add(30 * time.Second)
	k1, p1 := offer()
	k2, p2 := offer()
	clk.add(30 * time.Second)
	won := winners(race([][]byte{k1, k2}, []string{p1, p2}))
	if len(won) != 1 {
		t.Fatalf("two offers confirmed at once: %d answered 200, want 1", len(won))
	}
	// The winner's key is the account's now.
	cred, err := e.store.TOTPByUser(context.Background(), ann.ID)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := e.admin.Sealer.Open(seal.AADTOTP(cred.UserID), cred.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]byte{k1, k2}[won[0]]; string(secret) != string(want) {
		t.Fatal("the key that answered 200 is not the account's")
	}
}

// TestAccountReplaceAuthenticator: a new authenticator offered on the page
// changes nothing until a code from it confirms it (a wrong code counts on
// the TOTP counter); then the old one stops working at the next sign-in,
// the new one works, new recovery codes are shown once, and another
// browser is signed out. A new key offered to one session does not open in
// another's form.
func TestAccountReplaceAuthenticator(t *testing.T) {
	ctx := context.Background()
	clk := accountClock()
	e := newTestEnv(t, func(c *Config) { c.Now = clk.now })
	mine, token := accountSignIn(t, e, clk)
	clk.add(30 * time.Second)
	other, otherToken := accountSignIn(t, e, clk)

	if status, _ := accountPost(t, mine, account.AuthenticatorPath, url.Values{"csrf": {token}}); status != http.StatusUnauthorized {
		t.Fatalf("a new authenticator without the current password: %d, want 401", status)
	}
	status, body := accountPost(t, mine, account.AuthenticatorPath, url.Values{"csrf": {token}, "current": {"correct horse"}})
	ms, mp := accountSecretRe.FindStringSubmatch(body), accountPendingRe.FindStringSubmatch(body)
	if status != http.StatusOK || ms == nil || mp == nil || !strings.Contains(body, "<svg") {
		t.Fatalf("new authenticator page: %d\n%s", status, body)
	}
	newSecret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ReplaceAll(ms[1], " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	pending := mp[1]
	// Another session's form does not take this key.
	if status, _ := accountPost(t, other, account.ConfirmPath, url.Values{"csrf": {otherToken}, "pending": {pending},
		"code": {totp.Code(newSecret, totp.Step(clk.now()))}}); status != http.StatusBadRequest {
		t.Fatalf("the key in another session's form: %d, want 400", status)
	}
	ann, _ := e.store.UserByUsername(ctx, "ann")
	before := totpState(t, e.store, ann.ID).Failures
	if status, _ := accountPost(t, mine, account.ConfirmPath, url.Values{"csrf": {token}, "pending": {pending}, "code": {"000000"}}); status != http.StatusUnauthorized {
		t.Fatalf("a wrong code of the new key: %d, want 401", status)
	}
	if after := totpState(t, e.store, ann.ID).Failures; after != before+1 {
		t.Fatalf("TOTP failures %d → %d, want one more", before, after)
	}
	clk.add(30 * time.Second)
	status, body = accountPost(t, mine, account.ConfirmPath, url.Values{"csrf": {token}, "pending": {pending},
		"code": {totp.Code(newSecret, totp.Step(clk.now()))}})
	if status != http.StatusOK || !strings.Contains(body, "Your new authenticator is set up") {
		t.Fatalf("the confirmation: %d\n%s", status, body)
	}
	if status, _, _ := accountGet(t, other.c, e.ts.URL+"/account"); status != http.StatusSeeOther {
		t.Fatalf("the other browser after the replacement: %d", status)
	}
	if status, _, _ := accountGet(t, mine.c, e.ts.URL+"/account"); status != http.StatusOK {
		t.Fatalf("this browser after the replacement: %d", status)
	}
	clk.add(30 * time.Second)
	signIn := func(code string) int {
		f := startFlow(t, e)
		if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"correct horse"}}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("password: %d", r.StatusCode)
		}
		f.load(t, e.ts.URL+login.URL(f.form.Get("id")))
		r, _ := f.postPage(t, "/login/totp", url.Values{"code": {code}})
		return r.StatusCode
	}
	if status := signIn(e.annCode(t, clk.now())); status != http.StatusUnauthorized {
		t.Fatalf("the old authenticator at a sign-in: %d, want 401", status)
	}
	if status := signIn(totp.Code(newSecret, totp.Step(clk.now()))); status != http.StatusSeeOther {
		t.Fatalf("the new authenticator at a sign-in: %d, want 303", status)
	}
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestAccountReviewFixes: what the review of the account page found.
// Ending another session from the page revokes its offline grant (F1); a
// must-change account does not reach the page before choosing its
// password (F2); a new authenticator's offer is not taken after the
// window, nor a second time (F3).
func TestAccountReviewFixes(t *testing.T) {
	ctx := context.Background()
	clk := accountClock()
	e := newTestEnv(t, func(c *Config) { c.Now = clk.now })
	mine, token := accountSignIn(t, e, clk)
	clk.add(30 * time.Second)
	other, _ := accountSignIn(t, e, clk)
	ann, _ := e.store.UserByUsername(ctx, "ann")

	// F1: an offline grant issued through the other session.
	// The SSO credential is the session cookie and its binding joined.
	var sessionCookie, bindCookie string
	for _, ck := range other.c.Jar.Cookies(mustURL(t, e.ts.URL)) {
		switch ck.Name {
		case "idp_session":
			sessionCookie = ck.Value
		case "idp_bind":
			bindCookie = ck.Value
		}
	}
	if sessionCookie == "" || bindCookie == "" {
		t.Fatal("no session cookies in the other browser")
	}
	otherCookie := sessionCookie + "." + bindCookie
	rt := storage.RefreshToken{ID: "rt-offline", TokenHash: secret.Hash("offline-secret"), FamilyID: "fam", ClientID: "app", UserID: ann.ID,
		Scopes: []string{"openid", "offline_access"}, Audience: []string{"app"}, AuthTime: clk.now(), CreatedAt: clk.now(),
		ExpiresAt: clk.now().Add(time.Hour), SessionHash: secret.Hash(otherCookie)}
	if err := e.store.CreateRefreshToken(ctx, rt, storage.AccessToken{}); err != nil {
		t.Fatal(err)
	}
	status, body := accountPost(t, mine, account.EndPath, url.Values{"csrf": {token}, "which": {"one"}, "session": {account.Handle(secret.Hash(otherCookie))}})
	if status != http.StatusOK || !strings.Contains(body, "signed out") {
		t.Fatalf("end the other session: %d", status)
	}
	if _, err := e.store.RefreshTokenByHash(ctx, rt.TokenHash, clk.now()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the ended session's offline grant: %v, want revoked", err)
	}

	// F3: the offer after the window, and a second time.
	status, body = accountPost(t, mine, account.AuthenticatorPath, url.Values{"csrf": {token}, "current": {"correct horse"}})
	ms, mp := accountSecretRe.FindStringSubmatch(body), accountPendingRe.FindStringSubmatch(body)
	if status != http.StatusOK || ms == nil || mp == nil {
		t.Fatalf("offer: %d", status)
	}
	key, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ReplaceAll(ms[1], " ", ""))
	form := func() url.Values {
		return url.Values{"csrf": {token}, "pending": {mp[1]}, "code": {totp.Code(key, totp.Step(clk.now()))}}
	}
	saved := clk.t
	clk.add(account.DefaultReauthWindow + time.Second)
	if status, _ := accountPost(t, mine, account.ConfirmPath, form()); status != http.StatusForbidden {
		t.Fatalf("the offer taken after the window: %d, want 403", status)
	}
	clk.t = saved.Add(30 * time.Second)
	if status, _ := accountPost(t, mine, account.ConfirmPath, form()); status != http.StatusOK {
		t.Fatalf("the offer in time: %d", status)
	}
	clk.add(30 * time.Second)
	if status, _ := accountPost(t, mine, account.ConfirmPath, form()); status != http.StatusBadRequest {
		t.Fatalf("the offer taken a second time: %d, want 400", status)
	}

	// F2: a must-change account is sent to sign in (and so to the form).
	if _, _, err := e.admin.SetPassword(ctx, "ann", "velvet compass seven", true, false); err != nil {
		t.Fatal(err)
	}
	clk.add(30 * time.Second)
	f := &inFlow{e: e, c: e.browser()}
	_, loc, _ := accountGet(t, f.c, e.ts.URL+"/account")
	_, loc, _ = accountGet(t, f.c, e.ts.URL+loc)
	f.load(t, e.ts.URL+loc)
	if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"velvet compass seven"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("password: %d", r.StatusCode)
	}
	f.load(t, e.ts.URL+login.URL(f.form.Get("id")))
	if r, _ := f.postPage(t, "/login/totp", url.Values{"code": {totp.Code(key, totp.Step(clk.now()))}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("totp: %d", r.StatusCode)
	}
	if status, loc, _ := accountGet(t, f.c, e.ts.URL+"/account"); status != http.StatusSeeOther || !strings.HasPrefix(loc, "/authorize?") {
		t.Fatalf("the account page of a must-change account: %d %s, want to be sent to sign in", status, loc)
	}
}

// TestAccountFormWording: an altered account form and a malformed
// recovery code get the account page's words, not the sign-in's
// (review A-F5).
func TestAccountFormWording(t *testing.T) {
	clk := accountClock()
	e := newTestEnv(t, func(c *Config) { c.Now = clk.now })
	mine, token := accountSignIn(t, e, clk)
	for _, c := range []struct {
		path string
		form url.Values
		want string
	}{
		{account.EndPath, url.Values{"which": {"bogus"}}, "This form arrived incomplete or changed"},
		{account.ConfirmPath, url.Values{"pending": {"!!"}, "code": {"123456"}}, "This form arrived incomplete or changed"},
		{account.CodesPath, url.Values{"current": {"correct horse"}}, "This form arrived incomplete or changed"},
		{account.VerifyPath, url.Values{"recovery_code": {"not-a-code"}}, "Enter a recovery code"},
	} {
		c.form.Set("csrf", token)
		status, body := accountPost(t, mine, c.path, c.form)
		if status != http.StatusBadRequest || !strings.Contains(body, c.want) || strings.Contains(body, "request from the application") {
			t.Errorf("%s %v: %d, want 400 with %q", c.path, c.form, status, c.want)
		}
	}
}

// TestAccountListsUsableSessions: a session idle past the idle timeout is
// no longer usable and is not listed (review A-F5).
func TestAccountListsUsableSessions(t *testing.T) {
	clk := accountClock()
	var idle time.Duration
	e := newTestEnv(t, func(c *Config) { c.Now = clk.now; idle = c.SessionIdleTimeout })
	mine, token := accountSignIn(t, e, clk)
	clk.add(30 * time.Second)
	accountSignIn(t, e, clk)
	// The number of other sessions with an End button; the buttons show
	// within the reauthentication window, so the second factor is proven
	// again first (the clock has moved on a step each time).
	others := func() int {
		if status, _ := accountPost(t, mine, account.VerifyPath, url.Values{"csrf": {token}, "code": {e.annCode(t, clk.now())}}); status != http.StatusSeeOther {
			t.Fatalf("reauthentication: %d", status)
		}
		status, _, body := accountGet(t, mine.c, e.ts.URL+"/account")
		if status != http.StatusOK {
			t.Fatalf("the account page: %d", status)
		}
		return strings.Count(body, `name="session" value=`)
	}
	clk.add(30 * time.Second)
	if n := others(); n != 1 {
		t.Fatalf("other sessions listed: %d, want 1", n)
	}
	// This browser's page keeps its own session in use; the other one
	// goes idle.
	clk.add(idle - time.Minute)
	if n := others(); n != 1 {
		t.Fatalf("other sessions listed before the other went idle: %d, want 1", n)
	}
	clk.add(2 * time.Minute)
	if n := others(); n != 0 {
		t.Fatalf("other sessions listed after the other went idle: %d, want 0", n)
	}
}

// TestAccountWrongCodesEndOnlyTheirSession: someone with the password
// fails four times at the login page's second step; the owner's one typo
// on the account page is then the fifth failure on the shared counter and
// starts its lock, but does not end the owner's session: the count that
// ends a session is its own (review of issue 12, C-F3; three of a
// session's own in a row end it: e2e TestAccountPageReauthentication).
func TestAccountWrongCodesEndOnlyTheirSession(t *testing.T) {
	clk := accountClock()
	e := newTestEnv(t, func(c *Config) { c.Now = clk.now })
	mine, token := accountSignIn(t, e, clk)
	for i := 0; i < DefaultTOTPPolicy.FreeFailures-1; i++ {
		f := startFlow(t, e)
		if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"correct horse"}}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("password: %d", r.StatusCode)
		}
		f.load(t, e.ts.URL+login.URL(f.form.Get("id")))
		if r, _ := f.postPage(t, "/login/totp", url.Values{"code": {"000000"}}); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("the attacker's wrong code %d: %d", i, r.StatusCode)
		}
	}
	if status, _ := accountPost(t, mine, account.VerifyPath, url.Values{"csrf": {token}, "code": {"000000"}}); status != http.StatusUnauthorized {
		t.Fatalf("the owner's typo: %d, want 401", status)
	}
	ann, _ := e.store.UserByUsername(context.Background(), "ann")
	if st := totpState(t, e.store, ann.ID); !st.LockedUntil.After(clk.now()) {
		t.Fatalf("the shared counter after five failures: %+v, want locked", st)
	}
	if status, _, _ := accountGet(t, mine.c, e.ts.URL+"/account"); status != http.StatusOK {
		t.Fatalf("the owner's page after one typo under attack: %d, want it kept", status)
	}
	if n := e.auditCount(t, "session_ended_wrong_codes"); n != 0 {
		t.Fatalf("session_ended_wrong_codes: %d, want 0", n)
	}
}

// TestAccountSessionTriesBounded: one session adds at most three failures
// to the account's shared counter between proofs, however its wrong codes
// are sent: ten at once, or each with the connection dropped as soon as
// it is sent (review of issue 12, D-2 and D-5: the count came after the
// check, so both got past it; the dropped connections reached 20, a hard
// lock).
func TestAccountSessionTriesBounded(t *testing.T) {
	for _, mode := range []string{"at once", "dropped"} {
		t.Run(mode, func(t *testing.T) {
			clk := accountClock()
			e := newTestEnv(t, func(c *Config) { c.Now = clk.now })
			mine, token := accountSignIn(t, e, clk)
			ann, _ := e.store.UserByUsername(context.Background(), "ann")
			form := url.Values{"csrf": {token}, "code": {"000000"}}.Encode()
			send := func(ctx context.Context) {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.ts.URL+account.VerifyPath, strings.NewReader(form))
				if err != nil {
					t.Error(err)
					return
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Origin", e.ts.URL)
				if resp, err := mine.c.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			var wg sync.WaitGroup
			for i := 0; i < 10; i++ {
				if mode == "at once" {
					wg.Add(1)
					go func() { defer wg.Done(); send(context.Background()) }()
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
				send(ctx)
				cancel()
				time.Sleep(20 * time.Millisecond) // let the server finish the request it was sent
			}
			wg.Wait()
			time.Sleep(100 * time.Millisecond)
			if st := totpState(t, e.store, ann.ID); st.Failures > 3 {
				t.Fatalf("the shared counter after ten wrong codes of one session: %d failures, want at most 3", st.Failures)
			}
			if mode == "at once" {
				if status, _, _ := accountGet(t, mine.c, e.ts.URL+"/account"); status != http.StatusSeeOther {
					t.Fatalf("the session after ten wrong codes at once: %d, want ended", status)
				}
			}
		})
	}
}

// TestAccountSessionWrongCodesOverItsLife: the owner's proofs in between
// do not make room for more wrong codes in the same session (a copied
// cookie jar used alongside the owner): the third wrong code of the
// session's life ends it (review of issue 12, E-2: two wrong codes
// between each of the owner's proofs reached the hard lock of 20).
func TestAccountSessionWrongCodesOverItsLife(t *testing.T) {
	clk := accountClock()
	e := newTestEnv(t, func(c *Config) { c.Now = clk.now })
	mine, token := accountSignIn(t, e, clk)
	verify := func(code string) int {
		status, _ := accountPost(t, mine, account.VerifyPath, url.Values{"csrf": {token}, "code": {code}})
		return status
	}
	var got []int
	for round := 0; round < 3; round++ {
		clk.add(30 * time.Second)
		got = append(got, verify(e.annCode(t, clk.now())), verify("000000"), verify("000001"))
	}
	// Round one: the proof, two wrong codes; round two: the proof, the
	// third wrong code of the session's life ends it; after that, signed
	// out.
	if want := []int{303, 401, 401, 303, 401, 403, 403, 403, 403}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("a session's codes over its life: %v, want %v", got, want)
	}
	ann, _ := e.store.UserByUsername(context.Background(), "ann")
	if st := totpState(t, e.store, ann.ID); st.Failures > 3 || st.BudgetLevel > 3 {
		t.Fatalf("the shared counter: %d failures, budget %v, want at most the session's 3", st.Failures, st.BudgetLevel)
	}
}
