package op

import (
	"context"
	"encoding/base32"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/admin"
	"github.com/totp-idp/idp/op/login"
	"github.com/totp-idp/idp/op/totp"
	"github.com/totp-idp/idp/storage"
)

// testClock is an injected clock for the provider (Config.Now).
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time      { return c.t }
func (c *testClock) add(d time.Duration) { c.t = c.t.Add(d) }

var secretOnPage = regexp.MustCompile(`<code class="secret"[^>]*>([A-Z2-7 ]+)</code>`)

// postPage is post that also returns the answer's body.
func (f *inFlow) postPage(t *testing.T, path string, fields url.Values) (*http.Response, string) {
	t.Helper()
	form := url.Values{"id": {f.form.Get("id")}, "csrf": {f.form.Get("csrf")}}
	for k, v := range fields {
		form[k] = v
	}
	resp, err := f.c.PostForm(f.e.ts.URL+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestEnrollmentInProcess walks a first sign-in that sets up the
// authenticator, on an injected clock: the enrollment page after the
// password only, its QR code to the bound browser only, a malformed code
// that counts nothing, a wrong one counted on the TOTP counter, the right
// one moving the request to enrolled (not done) with ten recovery codes,
// and then only a code of a later time step finishing the sign-in
// (docs/THREAT-MODEL.md rule 7, R-T4).
func TestEnrollmentInProcess(t *testing.T) {
	ctx := context.Background()
	clk := &testClock{t: time.Now().UTC().Truncate(30 * time.Second).Add(5 * time.Second)}
	e := newTestEnv(t, func(c *Config) { c.Now = clk.now })
	e.admin.Now = clk.now
	if _, err := e.admin.AddUser(ctx, admin.NewUser{Username: "bob", Password: "correct staple", SkipTOTP: true}); err != nil {
		t.Fatal(err)
	}
	bob, _ := e.store.UserByUsername(ctx, "bob")
	stage := func(f *inFlow) string {
		a, err := e.store.AuthRequestByID(ctx, f.form.Get("id"), clk.now())
		if err != nil {
			t.Fatal(err)
		}
		return a.Stage
	}
	totpFailures := func() int {
		states, err := e.store.AttemptStates(ctx, bob.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range states {
			if s.Factor == storage.FactorTOTP {
				return s.Failures
			}
		}
		return 0
	}
	f := startFlow(t, e)
	id := f.form.Get("id")
	if r := f.post(t, "/login/enroll", url.Values{"code": {"123456"}}); r.StatusCode != http.StatusSeeOther || stage(f) != storage.StageCreated {
		t.Fatalf("enrollment before the password: %d, stage %s", r.StatusCode, stage(f))
	}
	if r := f.post(t, "/login/password", url.Values{"username": {"bob"}, "password": {"correct staple"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("password: %d", r.StatusCode)
	}
	status, page := f.load(t, e.ts.URL+login.URL(id))
	m := secretOnPage.FindStringSubmatch(page)
	if status != http.StatusOK || m == nil || !strings.Contains(page, "/login/enroll/qr.png?id=") {
		t.Fatalf("enrollment page: %d\n%s", status, page)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ReplaceAll(m[1], " ", ""))
	if err != nil || len(secret) != 20 {
		t.Fatalf("secret on the page %q: %v", m[1], err)
	}
	qr := e.ts.URL + "/login/enroll/qr.png?id=" + url.QueryEscape(id)
	if resp, err := f.c.Get(qr); err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("QR code in the bound browser: %v %+v", err, resp)
	}
	if status, _ := get(t, e.browser(), qr); status != http.StatusNotFound {
		t.Fatalf("QR code in another browser: %d", status)
	}
	if r := f.post(t, "/login/enroll", url.Values{"code": {"12"}}); r.StatusCode != http.StatusBadRequest || totpFailures() != 0 {
		t.Fatalf("malformed code: %d, %d failures", r.StatusCode, totpFailures())
	}
	now := totp.Step(clk.now())
	wrong := totp.Code(secret, now+5)
	if r := f.post(t, "/login/enroll", url.Values{"code": {wrong}}); r.StatusCode != http.StatusUnauthorized || totpFailures() != 1 || e.auditCount(t, "enrollment_failed") != 1 {
		t.Fatalf("wrong code: %d, %d failures", r.StatusCode, totpFailures())
	}
	code := totp.Code(secret, now)
	r, body := f.postPage(t, "/login/enroll", url.Values{"code": {code}})
	if r.StatusCode != http.StatusOK || strings.Count(body, "-") < 40 || stage(f) != storage.StageEnrolled {
		t.Fatalf("right code: %d, stage %s\n%s", r.StatusCode, stage(f), body)
	}
	f.load(t, e.ts.URL+login.URL(id)) // the renewed flow secret's form token
	if r := f.post(t, "/login/recovery", url.Values{"recovery_code": {"aaaaa-bbbbb-ccccc-ddddd-eeeee-f"}}); r.StatusCode != http.StatusSeeOther || stage(f) != storage.StageEnrolled {
		t.Fatalf("a recovery code right after enrolling: %d, stage %s", r.StatusCode, stage(f))
	}
	if r := f.post(t, "/login/totp", url.Values{"code": {code}}); r.StatusCode != http.StatusUnauthorized || stage(f) != storage.StageEnrolled {
		t.Fatalf("the enrollment's own code at the TOTP step: %d, stage %s", r.StatusCode, stage(f))
	}
	clk.add(totp.Period * time.Second)
	if r := f.post(t, "/login/totp", url.Values{"code": {totp.Code(secret, now+1)}}); r.StatusCode != http.StatusSeeOther || stage(f) != storage.StageDone {
		t.Fatalf("a later step's code: %d, stage %s", r.StatusCode, stage(f))
	}
	evs, err := e.store.ListAudit(ctx, storage.AuditFilter{UserID: bob.ID})
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, ev := range evs {
		n[ev.Type]++
	}
	if n["totp_enrolled"] != 1 || n["totp_replay"] != 1 || n["login_completed"] != 1 {
		t.Errorf("bob's audit: %v", n)
	}
}

// TestEnrollmentWindowCloses: once Config.EnrollWithin has passed since
// the account was left without an authenticator, the right password leads
// to the "ask your administrator" page, audited, and nothing else: no
// enrollment page, no QR code.
func TestEnrollmentWindowCloses(t *testing.T) {
	ctx := context.Background()
	clk := &testClock{t: time.Now().UTC()}
	e := newTestEnv(t, func(c *Config) { c.Now = clk.now; c.EnrollWithin = time.Hour })
	e.admin.Now = clk.now
	if _, err := e.admin.AddUser(ctx, admin.NewUser{Username: "cy", Password: "correct staple", SkipTOTP: true}); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Hour)
	f := startFlow(t, e)
	id := f.form.Get("id")
	r, body := f.postPage(t, "/login/password", url.Values{"username": {"cy"}, "password": {"correct staple"}})
	if r.StatusCode != http.StatusForbidden || !strings.Contains(body, "rp.example/cb?error=access_denied") || e.auditCount(t, "enrollment_expired") != 1 {
		t.Fatalf("password after the window: %d\n%s", r.StatusCode, body)
	}
	a, _ := e.store.AuthRequestByID(ctx, id, clk.now())
	if a.Stage != storage.StageCreated {
		t.Fatalf("stage %s after a refused enrollment", a.Stage)
	}
	if status, _ := get(t, f.c, e.ts.URL+"/login/enroll/qr.png?id="+url.QueryEscape(id)); status != http.StatusNotFound {
		t.Fatalf("QR code after the window: %d", status)
	}
}

// TestEnrollFormOnAnEnrolledAccount: the enrollment form of an account
// that already has an authenticator (or of a flow without a pending
// secret) claims nothing: it is no second-factor attempt, so it must not
// lock the account's TOTP counter silently, without a failure in the
// audit trail (docs/THREAT-MODEL.md rule 3, R-L2).
func TestEnrollFormOnAnEnrolledAccount(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t, nil)
	f := startFlow(t, e)
	id := f.form.Get("id")
	if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"correct horse"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("password: %d", r.StatusCode)
	}
	f.load(t, e.ts.URL+login.URL(id))
	for i, code := range []string{"123456", "12", "654321", "000000", "111111", "222222", "333333"} {
		if r := f.post(t, "/login/enroll", url.Values{"code": {code}}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("enroll post %d: %d, want 303 to the login page", i, r.StatusCode)
		}
	}
	states, err := e.store.AttemptStates(ctx, e.annID(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.Factor == storage.FactorTOTP && (s.Failures != 0 || !s.LockedUntil.IsZero()) {
			t.Fatalf("the enrollment form counted on the TOTP counter: %+v", s)
		}
	}
	if n := e.auditCount(t, "locked_refused"); n != 0 {
		t.Fatalf("%d locked_refused rows", n)
	}
	if r := f.post(t, "/login/totp", url.Values{"code": {e.annCode(t, time.Now())}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("the right code afterwards: %d", r.StatusCode)
	}
}
