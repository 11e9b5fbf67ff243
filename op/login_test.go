package op

import (
	"context"
	"encoding/base32"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/login"
	"github.com/totp-idp/idp/op/totp"
	"github.com/totp-idp/idp/storage"
)

// inFlow is one sign-in in process: the browser and the current form.
type inFlow struct {
	e    *testEnv
	c    *http.Client
	form url.Values
}

var hiddenField = regexp.MustCompile(`name="(id|csrf)" value="([^"]*)"`)

// startFlow sends a new browser to /authorize and on to the password form.
func startFlow(t *testing.T, e *testEnv) *inFlow {
	t.Helper()
	f := &inFlow{e: e, c: e.browser()}
	resp, err := f.c.Get(e.ts.URL + "/authorize?" + authorizeQuery().Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("/authorize: %d", resp.StatusCode)
	}
	f.load(t, e.ts.URL+resp.Header.Get("Location"))
	return f
}

// load fetches a page of the flow and keeps its form fields.
func (f *inFlow) load(t *testing.T, u string) (int, string) {
	t.Helper()
	status, body := get(t, f.c, u)
	f.form = url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(body, -1) {
		f.form.Set(m[1], m[2])
	}
	return status, body
}

// post submits fields with the flow's id and csrf (unless overridden).
func (f *inFlow) post(t *testing.T, path string, fields url.Values) *http.Response {
	t.Helper()
	form := url.Values{"id": {f.form.Get("id")}, "csrf": {f.form.Get("csrf")}}
	for k, v := range fields {
		form[k] = v
	}
	req, _ := http.NewRequest(http.MethodPost, f.e.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := f.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func (e *testEnv) annCode(t *testing.T, at time.Time) string {
	t.Helper()
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(e.annSecret))
	if err != nil {
		t.Fatal(err)
	}
	return totp.Code(secret, totp.Step(at))
}

func (e *testEnv) auditCount(t *testing.T, typ string) int {
	t.Helper()
	evs, err := e.store.ListAudit(context.Background(), storage.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

// TestLoginFormsRefuseForgeryAndOtherBrowsers: every form of the flow
// refuses a missing or wrong form token and a browser without the flow's
// cookie, audits it, and moves nothing (docs/THREAT-MODEL.md rule 7, R-W1).
func TestLoginFormsRefuseForgeryAndOtherBrowsers(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, path := range []string{"/login/password", "/login/totp", "/login/recovery", "/login/enroll"} {
		f := startFlow(t, e)
		fields := url.Values{"username": {"ann"}, "password": {"correct horse"}, "code": {"123456"}, "recovery_code": {"x"}}
		before := e.auditCount(t, "csrf_rejected")
		if r := f.post(t, path, url.Values{"csrf": {"forged"}, "username": fields["username"], "password": fields["password"], "code": fields["code"]}); r.StatusCode != http.StatusForbidden {
			t.Errorf("%s with a forged token: %d", path, r.StatusCode)
		}
		if e.auditCount(t, "csrf_rejected") != before+1 {
			t.Errorf("%s: a forged token was not audited", path)
		}
		other := &inFlow{e: e, c: e.browser(), form: f.form}
		before = e.auditCount(t, "binding_mismatch")
		if r := other.post(t, path, fields); r.StatusCode != http.StatusForbidden {
			t.Errorf("%s from another browser: %d", path, r.StatusCode)
		}
		if e.auditCount(t, "binding_mismatch") != before+1 {
			t.Errorf("%s: another browser was not audited", path)
		}
		a, err := e.store.AuthRequestByID(context.Background(), f.form.Get("id"), time.Now())
		if err != nil || a.Stage != storage.StageCreated {
			t.Errorf("%s: the refused posts moved the request to %q (%v)", path, a.Stage, err)
		}
	}
}

// TestStageTransitions: the second step before the password, or a code
// after done, moves nothing; the password leads to password_ok and only
// the TOTP step to done (docs/THREAT-MODEL.md rule 7).
func TestStageTransitions(t *testing.T) {
	e := newTestEnv(t, nil)
	ctx := context.Background()
	stage := func(f *inFlow) string {
		a, err := e.store.AuthRequestByID(ctx, f.form.Get("id"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return a.Stage
	}
	f := startFlow(t, e)
	id := f.form.Get("id")
	if r := f.post(t, "/login/totp", url.Values{"code": {e.annCode(t, time.Now())}}); r.StatusCode != http.StatusSeeOther || stage(f) != storage.StageCreated {
		t.Fatalf("a code before the password: %d, stage %s", r.StatusCode, stage(f))
	}
	if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"wrong horse"}}); r.StatusCode != http.StatusUnauthorized || stage(f) != storage.StageCreated {
		t.Fatalf("a wrong password: %d, stage %s", r.StatusCode, stage(f))
	}
	if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"correct horse"}}); r.StatusCode != http.StatusSeeOther || stage(f) != storage.StagePasswordOK {
		t.Fatalf("the right password: %d, stage %s", r.StatusCode, stage(f))
	}
	f.load(t, e.ts.URL+login.URL(id)) // the renewed flow secret's form token
	if r := f.post(t, "/login/totp", url.Values{"code": {"000000"}}); r.StatusCode != http.StatusUnauthorized && r.StatusCode != http.StatusSeeOther {
		t.Fatalf("a wrong code: %d", r.StatusCode)
	}
	if stage(f) != storage.StagePasswordOK {
		t.Fatalf("after a wrong code: stage %s", stage(f))
	}
	if r := f.post(t, "/login/totp", url.Values{"code": {e.annCode(t, time.Now())}}); r.StatusCode != http.StatusSeeOther || stage(f) != storage.StageDone {
		t.Fatalf("the right code: %d, stage %s", r.StatusCode, stage(f))
	}
	// A password form posted to the done request (with this browser's
	// current form token) moves nothing and evaluates nothing.
	u, _ := url.Parse(e.ts.URL)
	for _, c := range f.c.Jar.Cookies(u) {
		if strings.HasPrefix(c.Name, "idp_flow_") {
			f.form.Set("csrf", login.CSRFToken(c.Value, id))
		}
	}
	before, _ := e.store.AttemptStates(ctx, e.annID(t))
	if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"wrong horse"}}); r.StatusCode != http.StatusSeeOther || stage(f) != storage.StageDone {
		t.Fatalf("a password after done: %d, stage %s", r.StatusCode, stage(f))
	}
	if after, _ := e.store.AttemptStates(ctx, e.annID(t)); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a password after done changed the counters: %+v, then %+v", before, after)
	}
}

// TestLockedPasswordEvaluatesNothing: past the free failures the password
// step answers 429 with Retry-After and computes no hash
// (docs/THREAT-MODEL.md rule 4).
func TestLockedPasswordEvaluatesNothing(t *testing.T) {
	e := newTestEnv(t, func(c *Config) {
		c.PasswordPolicy.FreeFailures, c.PasswordPolicy.BaseLock, c.PasswordPolicy.MaxLock = 2, time.Hour, time.Hour
	})
	for i := range 2 {
		f := startFlow(t, e)
		if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"wrong"}}); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, r.StatusCode)
		}
	}
	_, _, hashes := e.srv.hasher.Stats()
	f := startFlow(t, e)
	r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"correct horse"}})
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("while locked: %d, Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	if _, _, after := e.srv.hasher.Stats(); after != hashes {
		t.Fatalf("a locked attempt computed %d hashes", after-hashes)
	}
}

// TestRecoveryCodeOnceAndOnTheTOTPCounter: a recovery code completes the
// sign-in once; the same code in another flow is a failure counted on the
// TOTP counter (docs/THREAT-MODEL.md R-S4, R-A8).
func TestRecoveryCodeOnceAndOnTheTOTPCounter(t *testing.T) {
	e := newTestEnv(t, nil)
	ctx := context.Background()
	_, codes, _, err := e.admin.RegenerateRecoveryCodes(ctx, "ann")
	if err != nil || len(codes) == 0 {
		t.Fatalf("recovery codes: %v", err)
	}
	use := func(code string) (int, string) {
		f := startFlow(t, e)
		if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"correct horse"}}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("password: %d", r.StatusCode)
		}
		f.load(t, e.ts.URL+"/login/recovery?id="+url.QueryEscape(f.form.Get("id")))
		r := f.post(t, "/login/recovery", url.Values{"recovery_code": {code}})
		a, err := e.store.AuthRequestByID(ctx, f.form.Get("id"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return r.StatusCode, a.Stage
	}
	if status, stage := use(strings.ToUpper(codes[0])); status != http.StatusOK || stage != storage.StageDone {
		t.Fatalf("a fresh recovery code (typed in capitals): %d, stage %s", status, stage)
	}
	if status, stage := use(codes[0]); status != http.StatusUnauthorized || stage != storage.StagePasswordOK {
		t.Fatalf("the same code again: %d, stage %s", status, stage)
	}
	states, err := e.store.AttemptStates(ctx, e.annID(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range states {
		if st.Factor == storage.FactorTOTP && st.Failures == 1 {
			return
		}
	}
	t.Fatalf("the reused code is not one failure on the TOTP counter: %+v", states)
}

func (e *testEnv) annID(t *testing.T) string {
	t.Helper()
	u, err := e.store.UserByUsername(context.Background(), "ann")
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

// TestPromptNoneSessionGoneMeanwhile: prompt=none is answered at
// /authorize when no session can satisfy it; if the session that could
// ends before the login page is reached, the page sends the application
// login_required with iss (OpenID Connect Core §3.1.2.6, RFC 9207), never
// a form.
func TestPromptNoneSessionGoneMeanwhile(t *testing.T) {
	e := newTestEnv(t, nil)
	ctx := context.Background()
	f := startFlow(t, e)
	id := f.form.Get("id")
	if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"correct horse"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("password: %d", r.StatusCode)
	}
	f.load(t, e.ts.URL+login.URL(id))
	if r := f.post(t, "/login/totp", url.Values{"code": {e.annCode(t, time.Now())}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("code: %d", r.StatusCode)
	}
	q := authorizeQuery()
	q.Set("prompt", "none")
	resp, err := f.c.Get(e.ts.URL + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	next := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(next, login.Path) {
		t.Fatalf("prompt=none with a session: %d %s", resp.StatusCode, next)
	}
	if _, _, err := e.admin.RevokeSessions(ctx, "ann", ""); err != nil {
		t.Fatal(err)
	}
	resp, err = f.c.Get(e.ts.URL + next)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Host != "rp.example" || loc.Query().Get("error") != "login_required" ||
		loc.Query().Get("iss") != "http://127.0.0.1:1" || loc.Query().Get("state") != "st" {
		t.Fatalf("login page after the session ended: %d %s", resp.StatusCode, loc)
	}
}

// TestCookiesOfACompletedLogin: the wiring gives each cookie of a full
// sign-in its attributes: the device cookie lives DeviceLifetime and is
// SameSite=Strict, the SSO cookie SessionLifetime, all HttpOnly on Path=/
// (docs/THREAT-MODEL.md rule 14, R-W2).
func TestCookiesOfACompletedLogin(t *testing.T) {
	e := newTestEnv(t, nil)
	f := startFlow(t, e)
	id := f.form.Get("id")
	if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"correct horse"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("password: %d", r.StatusCode)
	}
	f.load(t, e.ts.URL+login.URL(id))
	form := url.Values{"id": {id}, "csrf": {f.form.Get("csrf")}, "code": {e.annCode(t, time.Now())}}
	resp, err := f.c.PostForm(e.ts.URL+"/login/totp", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := map[string]*http.Cookie{}
	for _, c := range resp.Cookies() {
		got[c.Name] = c
	}
	dev, sso := got["idp_device"], got["idp_session"]
	if dev == nil || dev.MaxAge != int(DefaultDeviceLifetime/time.Second) || dev.SameSite != http.SameSiteStrictMode || !dev.HttpOnly || dev.Path != "/" {
		t.Errorf("device cookie: %+v", dev)
	}
	for _, sso := range []*http.Cookie{sso, got["idp_bind"]} {
		if sso == nil || sso.MaxAge != int(DefaultConfig("http://x").SessionLifetime/time.Second) || sso.SameSite != http.SameSiteLaxMode || !sso.HttpOnly || sso.Path != "/" {
			t.Errorf("SSO cookie: %+v", sso)
		}
	}
	if sso != nil && got["idp_bind"] != nil && sso.Value == got["idp_bind"].Value {
		t.Error("the session cookie and its binding carry one value")
	}
}
