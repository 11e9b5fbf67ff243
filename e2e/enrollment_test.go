package e2e

import (
	"bytes"
	"fmt"
	"image/png"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

var (
	enrSecretRe = regexp.MustCompile(`<code class="secret"[^>]*>([A-Z2-7 ]+)</code>`)
	enrCodesRe  = regexp.MustCompile(`(?s)<textarea id="codes"[^>]*>(.*?)</textarea>`)
	enrLinkRe   = regexp.MustCompile(`<a class="button" href="([^"]+)"`)
)

// enrAddUserAtLogin creates a user without an authenticator.
func enrAddUserAtLogin(t *testing.T, db, name, password string) User {
	t.Helper()
	CLI(t, db, password+"\n", "user", "add", name, "--password-stdin", "--enroll-at-login")
	return User{Name: name, Password: password}
}

// enrPasswordToEnroll runs the password step and returns the enrollment page.
func enrPasswordToEnroll(t *testing.T, f *Flow, u User) Page {
	t.Helper()
	p := f.Password(u.Name, u.Password)
	if p.Status != http.StatusSeeOther {
		t.Fatalf("password: %d\n%s", p.Status, p.Body)
	}
	page := f.B.Get(p.Location)
	if page.Status != http.StatusOK || !strings.Contains(page.Body, `action="/login/enroll"`) {
		t.Fatalf("want the enrollment page, got %d\n%s", page.Status, page.Body)
	}
	f.Form = Hidden(page.Body)
	return page
}

func enrSecret(t *testing.T, body string) string {
	t.Helper()
	m := enrSecretRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no secret on the page:\n%s", body)
	}
	return strings.ReplaceAll(m[1], " ", "")
}

func enrCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func enrPost(f *Flow, path string, fields url.Values) Page {
	fields.Set("id", f.Form.Get("id"))
	fields.Set("csrf", f.Form.Get("csrf"))
	return f.B.Post(f.S.URL+path, fields)
}

// enrEnroll completes enrollment for u in a new flow and returns the secret
// and the recovery codes shown.
func enrEnroll(t *testing.T, s *Server, c Client, u *User) (string, []string) {
	t.Helper()
	b := NewBrowser(t, "")
	f := b.StartFlow(s, c, AuthParams{})
	page := enrPasswordToEnroll(t, f, *u)
	secret := enrSecret(t, page.Body)
	done := enrPost(f, "/login/enroll", url.Values{"code": {enrCode(t, secret, time.Now())}})
	if done.Status != http.StatusOK {
		t.Fatalf("confirm: %d\n%s", done.Status, done.Body)
	}
	m := enrCodesRe.FindStringSubmatch(done.Body)
	if m == nil {
		t.Fatalf("no recovery codes:\n%s", done.Body)
	}
	codes := strings.Fields(m[1])
	key, err := otp.NewKeyFromURL("otpauth://totp/x:" + u.Name + "?secret=" + secret + "&issuer=x")
	if err != nil {
		t.Fatal(err)
	}
	u.Key = key
	return secret, codes
}

// TestEnrollmentAtLogin: a user created with --enroll-at-login sets up TOTP
// after the password; the secret is active only after a valid code, which
// is consumed; the flow cannot complete without confirmation.
func TestEnrollmentAtLogin(t *testing.T) {
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	u := enrAddUserAtLogin(t, s.DB, "erin", "correct horse battery")
	b := NewBrowser(t, "")
	f := b.StartFlow(s, c, AuthParams{})
	page := enrPasswordToEnroll(t, f, u)
	secret := enrSecret(t, page.Body)
	if len(secret) < 32 {
		t.Errorf("secret %q shorter than 160 bits", secret)
	}
	// The QR code is a PNG served by the provider itself.
	qr := b.Get(s.URL + "/login/enroll/qr.png?id=" + url.QueryEscape(f.Form.Get("id")))
	if qr.Status != http.StatusOK || qr.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("qr: %d %s", qr.Status, qr.Header.Get("Content-Type"))
	}
	if img, err := png.Decode(bytes.NewReader([]byte(qr.Body))); err != nil || img.Bounds().Dx() < 100 {
		t.Fatalf("qr png: %v", err)
	}
	// Another browser gets no QR code.
	if other := NewBrowser(t, "").Get(s.URL + "/login/enroll/qr.png?id=" + url.QueryEscape(f.Form.Get("id"))); other.Status == http.StatusOK {
		t.Fatal("qr served to another browser")
	}
	// Reloading keeps the same pending secret.
	if again := b.Get(f.LoginURL); enrSecret(t, again.Body) != secret {
		t.Fatal("pending secret regenerated on reload")
	}
	// No code before confirmation.
	cb := b.Get(s.URL + "/authorize/callback?id=" + url.QueryEscape(f.Form.Get("id")))
	if strings.Contains(cb.Location, "code=") {
		t.Fatalf("callback before confirmation issued a code: %s", cb.Location)
	}
	// A wrong code keeps the secret inactive.
	wrong := enrCode(t, secret, time.Now().Add(-5*time.Minute))
	if p := enrPost(f, "/login/enroll", url.Values{"code": {wrong}}); p.Status != http.StatusUnauthorized {
		t.Fatalf("wrong confirmation code: %d", p.Status)
	}
	if out := CLI(t, s.DB, "", "user", "show", "erin"); !strings.Contains(out, "totp:       false") {
		t.Fatalf("secret active after a wrong code:\n%s", out)
	}
	// Confirm with the previous step's code: the sign-in then finishes at
	// the TOTP step with the current one (TestEnrollingLoginEndsWithTOTPStep).
	code := enrCode(t, secret, time.Now().Add(-30*time.Second))
	done := enrPost(f, "/login/enroll", url.Values{"code": {code}})
	if done.Status != http.StatusOK || len(strings.Fields(enrCodesRe.FindStringSubmatch(done.Body)[1])) != 10 {
		t.Fatalf("confirm: %d\n%s", done.Status, done.Body)
	}
	link := enrLinkRe.FindStringSubmatch(done.Body)
	if link == nil {
		t.Fatal("no continue link")
	}
	next := b.Get(absURL(s, strings.ReplaceAll(link[1], "&amp;", "&")))
	if !atkIsTOTPForm(next) {
		t.Fatalf("after the recovery codes: want the TOTP form, got %d\n%s", next.Status, next.Body)
	}
	f.Form = Hidden(next.Body)
	authCode := f.CodeFrom(f.Follow(f.TOTP(enrCode(t, secret, time.Now()))))
	tok, err := rp.Exchange(f, authCode)
	if err != nil {
		t.Fatal(err)
	}
	cl := rp.VerifyID(t, tok, f)
	if !slices.Contains(cl.AMR, "otp") || !slices.Contains(cl.AMR, "mfa") {
		t.Errorf("amr %v", cl.AMR)
	}
	// The confirming code's step is consumed: a login with it is a replay.
	f2 := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	if p := f2.Password(u.Name, u.Password); p.Status != http.StatusSeeOther {
		t.Fatal("password")
	}
	f2.Form = Hidden(f2.B.Get(f2.LoginURL).Body)
	if p := f2.TOTP(code); p.Status != http.StatusUnauthorized {
		t.Fatalf("replayed confirmation code: %d", p.Status)
	}
	// Operator reset: enrollment again at the next login.
	CLI(t, s.DB, "", "user", "reset-totp", "erin")
	f3 := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	if secret3 := enrSecret(t, enrPasswordToEnroll(t, f3, u).Body); secret3 == secret {
		t.Fatal("reset kept the old secret")
	}
}

// enrRecoveryFlow starts a flow for u up to the TOTP page.
func enrRecoveryFlow(t *testing.T, s *Server, c Client, u User) *Flow {
	t.Helper()
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	if p := f.Password(u.Name, u.Password); p.Status != http.StatusSeeOther {
		t.Fatalf("password: %d", p.Status)
	}
	page := f.B.Get(f.LoginURL)
	if !strings.Contains(page.Body, "Use a recovery code") {
		t.Fatalf("no recovery link on the TOTP page:\n%s", page.Body)
	}
	f.Form = Hidden(f.B.Get(s.URL + "/login/recovery?id=" + url.QueryEscape(Hidden(page.Body).Get("id"))).Body)
	return f
}

// TestRecoveryCodes: a code works once, concurrent use has one winner, an
// honest amr, and wrong codes count on the TOTP counter.
func TestRecoveryCodes(t *testing.T) {
	const limit = 5
	s := StartServer(t, append(fastPolicy, "--totp-max-failures", fmt.Sprint(limit), "--totp-lock", "1h", "--totp-lock-max", "2h")...)
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	u := enrAddUserAtLogin(t, s.DB, "rita", "correct horse battery")
	_, codes := enrEnroll(t, s, c, &u)

	f := enrRecoveryFlow(t, s, c, u)
	p := enrPost(f, "/login/recovery", url.Values{"recovery_code": {strings.ToUpper(codes[0])}})
	if p.Status != http.StatusOK || !strings.Contains(p.Body, "Recovery codes left: 9.") {
		t.Fatalf("recovery login: %d\n%s", p.Status, p.Body)
	}
	link := enrLinkRe.FindStringSubmatch(p.Body)
	tok, err := rp.Exchange(f, f.CodeFrom(f.Follow(f.B.Get(strings.ReplaceAll(link[1], "&amp;", "&")))))
	if err != nil {
		t.Fatal(err)
	}
	cl := rp.VerifyID(t, tok, f)
	if slices.Contains(cl.AMR, "otp") || !slices.Contains(cl.AMR, "pwd") {
		t.Errorf("amr after recovery %v: must not claim otp", cl.AMR)
	}
	// Second use fails.
	f = enrRecoveryFlow(t, s, c, u)
	if p := enrPost(f, "/login/recovery", url.Values{"recovery_code": {codes[0]}}); p.Status != http.StatusUnauthorized {
		t.Fatalf("reused recovery code: %d", p.Status)
	}
	// 20 concurrent uses of one code: one success.
	flows := make([]*Flow, 20)
	for i := range flows {
		flows[i] = enrRecoveryFlow(t, s, c, u)
	}
	var wg sync.WaitGroup
	status := make([]int, len(flows))
	start := make(chan struct{})
	for i, fl := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			status[i] = enrPost(fl, "/login/recovery", url.Values{"recovery_code": {codes[1]}}).Status
		}()
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, st := range status {
		if st == http.StatusOK {
			ok++
		}
	}
	if ok != 1 {
		t.Fatalf("concurrent uses of one code: %d successes (%v), want 1", ok, status)
	}
	// The counter: the reused code above and 19 concurrent losers were
	// failures, but each success reset it. Mix wrong TOTP and wrong
	// recovery codes: the lock comes at the combined count.
	CLI(t, s.DB, "", "user", "unlock", u.Name)
	f = enrRecoveryFlow(t, s, c, u)
	bogus := "aaaaa-bbbbb-ccccc-ddddd-eeeeee"
	for i := 0; i < limit; i++ {
		var p Page
		if i%2 == 0 {
			p = f.TOTP("000000")
			if p.Status == http.StatusSeeOther {
				t.Skip("000000 happened to be the current code")
			}
		} else {
			p = enrPost(f, "/login/recovery", url.Values{"recovery_code": {bogus}})
		}
		if p.Status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i+1, p.Status)
		}
	}
	if p := enrPost(f, "/login/recovery", url.Values{"recovery_code": {codes[2]}}); p.Status != http.StatusTooManyRequests {
		t.Fatalf("after %d mixed failures a valid recovery code got %d, want 429", limit, p.Status)
	}
	if p := f.TOTP(u.Code(time.Now())); p.Status != http.StatusTooManyRequests {
		t.Fatalf("locked: valid TOTP got %d, want 429", p.Status)
	}
	// L wrong recovery codes alone lock exactly as L wrong TOTP codes do.
	CLI(t, s.DB, "", "user", "unlock", u.Name)
	f = enrRecoveryFlow(t, s, c, u)
	for i := 0; i < limit; i++ {
		if p := enrPost(f, "/login/recovery", url.Values{"recovery_code": {bogus}}); p.Status != http.StatusUnauthorized {
			t.Fatalf("wrong recovery code %d: %d, want 401", i+1, p.Status)
		}
	}
	if p := enrPost(f, "/login/recovery", url.Values{"recovery_code": {codes[2]}}); p.Status != http.StatusTooManyRequests {
		t.Fatalf("after %d wrong recovery codes a valid one got %d, want 429", limit, p.Status)
	}
	if p := f.TOTP(u.Code(time.Now())); p.Status != http.StatusTooManyRequests {
		t.Fatalf("after %d wrong recovery codes a valid TOTP code got %d, want 429", limit, p.Status)
	}
	// Operator regeneration invalidates the old set.
	CLI(t, s.DB, "", "user", "unlock", u.Name)
	out := CLI(t, s.DB, "", "user", "recovery-codes", u.Name)
	f = enrRecoveryFlow(t, s, c, u)
	if p := enrPost(f, "/login/recovery", url.Values{"recovery_code": {codes[3]}}); p.Status != http.StatusUnauthorized {
		t.Fatalf("old-set code after regeneration: %d", p.Status)
	}
	newCodes := regexp.MustCompile(`[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{6}`).FindAllString(out, -1)
	if len(newCodes) != 10 {
		t.Fatalf("regenerated codes: %q", out)
	}
	if p := enrPost(f, "/login/recovery", url.Values{"recovery_code": {newCodes[0]}}); p.Status != http.StatusOK {
		t.Fatalf("new-set code: %d", p.Status)
	}
	audit := CLI(t, s.DB, "", "audit", "--user", u.Name)
	for _, ev := range []string{"totp_enrolled", "recovery_code_used", "recovery_code_failed", "recovery_codes_regenerated"} {
		if !strings.Contains(audit, ev) {
			t.Errorf("audit lacks %s", ev)
		}
	}
}
