package e2e

import (
	"crypto/sha256"
	"database/sql"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// pendEnrollPage runs the password step of a new flow for u and returns the
// flow and the page the login URL then shows.
func pendEnrollPage(t *testing.T, s *Server, c Client, u User) (*Flow, Page) {
	t.Helper()
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	p := f.Password(u.Name, u.Password)
	if p.Status != http.StatusSeeOther {
		return f, p
	}
	page := f.B.Get(p.Location)
	f.Form = Hidden(page.Body)
	return f, page
}

// pendExpired reports whether p is the refusal of an expired enrollment:
// 403, a page telling the user to ask the operator, and no form.
func pendExpired(p Page) bool {
	return p.Status == http.StatusForbidden && strings.Contains(p.Body, "administrator") &&
		!strings.Contains(p.Body, "<form") && !strings.Contains(p.Body, `class="secret"`)
}

// TestPendingEnrollmentExpires: an account waiting for enrollment signs in
// with its password alone only within --enroll-within of being put in that
// state. After it, the password gets a page saying to ask the operator,
// also for a flow that passed the password step in time, and the refusal
// is audited; `idp user reset-totp` opens a new window.
func TestPendingEnrollmentExpires(t *testing.T) {
	const within = 3 * time.Second
	s := StartServer(t, append(fastPolicy, "--enroll-within", within.String())...)
	c := AddClient(t, s.DB, "app")
	created := time.Now()
	u := enrAddUserAtLogin(t, s.DB, "pia", "correct horse battery")
	early, page := pendEnrollPage(t, s, c, u)
	if page.Status != http.StatusOK || !strings.Contains(page.Body, `action="/login/enroll"`) {
		t.Fatalf("within --enroll-within: want the enrollment page, got %d\n%s", page.Status, page.Body)
	}
	secret := enrSecret(t, page.Body)
	time.Sleep(time.Until(created.Add(within + 1500*time.Millisecond)))

	// The flow that passed the password step in time gets no further.
	if p := early.B.Get(early.LoginURL); !pendExpired(p) {
		t.Errorf("reloading the enrollment page after the deadline: %d\n%s", p.Status, p.Body)
	}
	if p := enrPost(early, "/login/enroll", url.Values{"code": {enrCode(t, secret, time.Now())}}); !pendExpired(p) {
		t.Errorf("confirming the enrollment after the deadline: %d\n%s", p.Status, p.Body)
	}
	// A new sign-in: the password alone gets the refusal.
	if _, p := pendEnrollPage(t, s, c, u); !pendExpired(p) {
		t.Errorf("password after the deadline: %d %q\n%s", p.Status, p.Location, p.Body)
	}
	if out := CLI(t, s.DB, "", "user", "show", u.Name); !strings.Contains(out, "totp:       false") {
		t.Errorf("an authenticator was bound after the deadline:\n%s", out)
	}
	if n := atkCount(atkAudit(t, s.DB, u.Name), "enrollment_expired"); n < 1 {
		t.Errorf("%d enrollment_expired audit events", n)
	}
	// The operator opens a new window.
	CLI(t, s.DB, "", "user", "reset-totp", u.Name)
	if _, p := pendEnrollPage(t, s, c, u); p.Status != http.StatusOK || !strings.Contains(p.Body, `action="/login/enroll"`) {
		t.Errorf("after reset-totp: want the enrollment page, got %d\n%s", p.Status, p.Body)
	}
}

// TestEnrollingLoginEndsWithTOTPStep: the authenticator bound at login
// rests on the password alone, so confirming it does not finish the login:
// the request goes back to the code form and completes only through the
// regular TOTP step with a later time step (amr pwd, otp, mfa). The
// recovery codes just shown cannot finish it either.
func TestEnrollingLoginEndsWithTOTPStep(t *testing.T) {
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	u := enrAddUserAtLogin(t, s.DB, "ned", "correct horse battery")
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	secret := enrSecret(t, enrPasswordToEnroll(t, f, u).Body)
	// The previous step's code confirms; the current one is left for the
	// TOTP step.
	confirm := enrCode(t, secret, time.Now().Add(-30*time.Second))
	done := enrPost(f, "/login/enroll", url.Values{"code": {confirm}})
	m := enrCodesRe.FindStringSubmatch(done.Body)
	link := enrLinkRe.FindStringSubmatch(done.Body)
	if done.Status != http.StatusOK || m == nil || link == nil {
		t.Fatalf("confirm: %d\n%s", done.Status, done.Body)
	}
	codes := strings.Fields(m[1])
	id := f.Form.Get("id")
	if cb := f.B.Get(s.URL + "/authorize/callback?id=" + url.QueryEscape(id)); atkHasCode(cb.Location) {
		t.Fatalf("the callback issued a code right after enrollment: %s", cb.Location)
	}
	next := f.B.Get(absURL(s, strings.ReplaceAll(link[1], "&amp;", "&")))
	if atkHasCode(next.Location) {
		t.Fatalf("Continue after enrollment issued a code without the TOTP step: %s", next.Location)
	}
	if next.Status == http.StatusSeeOther {
		next = f.B.Get(absURL(s, next.Location))
	}
	if next.Status != http.StatusOK || !atkIsTOTPForm(next) {
		t.Fatalf("after enrollment: want the TOTP form, got %d %q\n%s", next.Status, next.Location, next.Body)
	}
	if strings.Contains(next.Body, "/login/recovery") {
		t.Error("the code form after enrollment offers a recovery code")
	}
	f.Form = Hidden(next.Body)
	// A recovery code shown a moment ago does not finish this request.
	rec := enrPost(f, "/login/recovery", url.Values{"recovery_code": {codes[0]}})
	if rec.Status == http.StatusOK || atkHasCode(rec.Location) {
		t.Fatalf("a recovery code finished the enrolling request: %d %q", rec.Status, rec.Location)
	}
	// The confirming code's step is used.
	if p := f.TOTP(confirm); p.Status != http.StatusUnauthorized {
		t.Fatalf("the confirming code again: %d, want 401", p.Status)
	}
	p := f.TOTP(enrCode(t, secret, time.Now()))
	if p.Status != http.StatusSeeOther {
		t.Fatalf("TOTP step after enrollment: %d\n%s", p.Status, p.Body)
	}
	tok, err := rp.Exchange(f, f.CodeFrom(f.Follow(p)))
	if err != nil {
		t.Fatal(err)
	}
	cl := rp.VerifyID(t, tok, f)
	if !slices.Equal(cl.AMR, []string{"pwd", "otp", "mfa"}) || !strings.Contains(cl.ACR, "multi-factor") {
		t.Errorf("amr %v acr %q", cl.AMR, cl.ACR)
	}
	// The recovery code that was refused still works later, once.
	evs := atkAudit(t, s.DB, u.Name)
	if atkCount(evs, "recovery_code_used") != 0 || atkCount(evs, "totp_enrolled") != 1 || atkCount(evs, "login_completed") != 1 {
		t.Errorf("audit: %d recovery_code_used, %d totp_enrolled, %d login_completed",
			atkCount(evs, "recovery_code_used"), atkCount(evs, "totp_enrolled"), atkCount(evs, "login_completed"))
	}
}

// TestRecoveryNeedsAuthenticator: recovery codes stand in for a lost
// authenticator; an account that has none confirmed (waiting for
// enrollment) cannot sign in with one, even if codes exist for it. The
// operator cannot issue codes to it, and reset-totp deletes the old ones.
func TestRecoveryNeedsAuthenticator(t *testing.T) {
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	u := enrAddUserAtLogin(t, s.DB, "rob", "correct horse battery")
	out, errOut, err := CLIResult(s.DB, "", "user", "recovery-codes", u.Name)
	codes := regexp.MustCompile(`[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{6}`).FindAllString(out, -1)
	if err == nil {
		t.Errorf("recovery-codes for an account without an authenticator printed %d codes", len(codes))
	} else if !strings.Contains(errOut, "no authenticator") {
		t.Errorf("recovery-codes refusal does not say why: %s", errOut)
	}
	if len(codes) == 0 {
		// Codes that got there some other way (an older version, a
		// restored backup).
		codes = []string{"aaaaa-bbbbb-ccccc-ddddd-eeeeee"}
		pendInsertRecoveryCode(t, s.DB, atkShow(t, s.DB, u.Name).ID, codes[0])
	}
	f, page := pendEnrollPage(t, s, c, u)
	if !strings.Contains(page.Body, `action="/login/enroll"`) {
		t.Fatalf("want the enrollment page, got %d\n%s", page.Status, page.Body)
	}
	if p := f.B.Get(s.URL + "/login/recovery?id=" + url.QueryEscape(f.Form.Get("id"))); strings.Contains(p.Body, `name="recovery_code"`) {
		t.Error("the recovery form is offered to an account without an authenticator")
	}
	p := enrPost(f, "/login/recovery", url.Values{"recovery_code": {codes[0]}})
	if p.Status == http.StatusOK || atkHasCode(p.Location) || strings.Contains(p.Body, "Signed in with a recovery code") {
		t.Fatalf("recovery code accepted for an account without an authenticator: %d %q\n%s", p.Status, p.Location, p.Body)
	}
	if cb := f.B.Get(s.URL + "/authorize/callback?id=" + url.QueryEscape(f.Form.Get("id"))); atkHasCode(cb.Location) {
		t.Fatalf("callback issued a code: %s", cb.Location)
	}

	// After reset-totp the codes of the old authenticator are gone.
	v := enrAddUserAtLogin(t, s.DB, "ros", "correct horse battery")
	_, old := enrEnroll(t, s, c, &v)
	CLI(t, s.DB, "", "user", "reset-totp", v.Name)
	f, _ = pendEnrollPage(t, s, c, v)
	if p := enrPost(f, "/login/recovery", url.Values{"recovery_code": {old[0]}}); p.Status == http.StatusOK || atkHasCode(p.Location) {
		t.Fatalf("an old recovery code worked after reset-totp: %d %q", p.Status, p.Location)
	}
}

// pendInsertRecoveryCode stores a recovery code for userID as the server
// does (op/totp/recovery.go: SHA-256 of "recovery-code:v1:" and the code in
// lower case without dashes).
func pendInsertRecoveryCode(t *testing.T, db, userID, code string) {
	t.Helper()
	conn, err := sql.Open("sqlite", "file:"+db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sum := sha256.Sum256([]byte("recovery-code:v1:" + strings.ReplaceAll(code, "-", "")))
	if _, err := conn.Exec(`INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (?, ?, ?)`, userID, sum[:], time.Now().Unix()); err != nil {
		t.Fatal(err)
	}
}

// absURL resolves a provider-relative link.
func absURL(s *Server, u string) string {
	if strings.HasPrefix(u, "/") {
		return s.URL + u
	}
	return u
}
