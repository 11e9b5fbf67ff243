package e2e

// Browser tests: Debian's chromium, headless, driven with chromedp through
// the real idp binary and the example relying party (cmd/demo-rp). Every
// page a test sees is saved under testout/screenshots/<Test>/; with
// IDP_SCREENSHOTS_DIR set, the README's images are saved there too
// (`make screenshots`). IDP_SKIP_BROWSER=1 skips these tests.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// brClaims reads the demo RP's first claims table (th → td text).
func brClaims(b *brBrowser) map[string]string {
	b.t.Helper()
	var m map[string]string
	b.step("read the claims table", func(ctx context.Context) error {
		var err error
		m, err = chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`Object.fromEntries(
			[...document.querySelector('table.claims').rows].map(r => [r.cells[0].innerText.trim(), r.cells[1].innerText.trim()]))`))
		return err
	})
	return m
}

// brExpectClaimsPage checks that the browser is on the demo RP's claims
// page of a two-factor login (amr pwd, otp, mfa; acr; a recent auth_time).
func brExpectClaimsPage(b *brBrowser, rp *brDemoRP, u User) {
	b.t.Helper()
	b.waitVisible("demo RP claims page", "p.badges")
	if at := b.url(); !strings.HasPrefix(at, rp.URL+"/") {
		b.t.Fatalf("after the login the browser is at %s, want the demo RP %s", at, rp.URL)
	}
	badges := b.text("p.badges")
	for _, want := range []string{"Two-factor: yes", "amr: otp", "amr: mfa"} {
		if !strings.Contains(badges, want) {
			b.t.Errorf("badges %q lack %q", badges, want)
		}
	}
	if !b.has(".badge.yes") || b.has(".badge.no") {
		b.t.Errorf("badges %q: want only the green ones", badges)
	}
	c := brClaims(b)
	amr := strings.Fields(c["amr"])
	for _, want := range []string{"pwd", "otp", "mfa"} {
		if !slices.Contains(amr, want) {
			b.t.Errorf("amr %v lacks %q", amr, want)
		}
	}
	if c["acr"] == "" || c["acr"] == "absent" {
		b.t.Errorf("acr %q", c["acr"])
	}
	at, err := time.Parse("2006-01-02 15:04:05 UTC", c["auth_time"])
	if err != nil || time.Since(at) > 2*time.Minute || time.Until(at) > 5*time.Second {
		b.t.Errorf("auth_time %q not a recent time (%v)", c["auth_time"], err)
	}
	if u.ID != "" && c["sub"] != u.ID {
		b.t.Errorf("sub %q, want %q", c["sub"], u.ID)
	}
}

// TestBrowserLoginThroughDemoRP: the demo RP's Log in button leads to the
// password page, then the code page, then back to the demo RP's claims
// page with a two-factor login; Log out ends both sessions, so the next
// Log in asks for the password again.
func TestBrowserLoginThroughDemoRP(t *testing.T) {
	brRequireChromium(t)
	s := StartServer(t, fastPolicy...)
	u := AddUser(t, s.DB, "alice", "correct horse battery")
	rp := brStartDemoRP(t, s)
	b := brNewBrowser(t)

	brSigninPage(b, rp, s, "password", "signin.png")
	if h := b.text("h1"); h != "Sign in to Demo app" {
		t.Errorf("password page heading %q", h)
	}
	brSubmitPassword(b, u.Name, u.Password)
	b.waitVisible("code page", "#code")
	if at := b.url(); !strings.HasPrefix(at, s.URL+"/login/") {
		t.Fatalf("after the password the browser is at %s", at)
	}
	if step := b.text("p.step"); !strings.Contains(step, "6-digit code") {
		t.Errorf("code page step %q", step)
	}
	b.shot("code", "code.png")

	brSubmitCode(b, "/login/totp", u.Code(time.Now()))
	brExpectClaimsPage(b, rp, u)
	b.shot("claims", "")

	// Log out: the demo RP sends the browser to the provider's
	// end_session endpoint, which returns it to the demo RP's home page.
	b.clickAndLoad("click Log out", `form[action="/logout"] button[type=submit]`)
	b.waitVisible("signed-out home page", `a.button[href="/login"]`)
	if at := b.url(); !strings.HasPrefix(at, rp.URL+"/") {
		t.Fatalf("after Log out the browser is at %s, want the demo RP", at)
	}
	if n := b.text("p.notice"); n != "You have been logged out at the provider." {
		t.Errorf("notice after logout %q", n)
	}
	if h := b.text("h1"); h != "Not logged in" {
		t.Errorf("heading after logout %q", h)
	}
	b.shot("logged-out", "")

	// The provider session is gone: Log in asks for the password again.
	b.clickAndLoad("click Log in again", `a.button[href="/login"]`)
	b.waitVisible("password page after logout", "#password")
	if at := b.url(); !strings.HasPrefix(at, s.URL+"/login/") {
		t.Fatalf("Log in after logout led to %s, want the password page", at)
	}
	b.shot("password-again", "")
}

// TestBrowserWrongThenRightCode: a wrong code shows the code page again
// with an error announced by role=alert; the right code then signs in.
func TestBrowserWrongThenRightCode(t *testing.T) {
	brRequireChromium(t)
	s := StartServer(t, fastPolicy...)
	u := AddUser(t, s.DB, "bob", "correct horse battery")
	rp := brStartDemoRP(t, s)
	b := brNewBrowser(t)

	brSigninPage(b, rp, s, "password", "")
	brSubmitPassword(b, u.Name, u.Password)
	b.waitVisible("code page", "#code")
	b.shot("code", "")

	brSubmitCode(b, "/login/totp", brWrongCode(u))
	b.waitVisible("error message", `p.error[role=alert]`)
	if msg := b.text(`p.error[role=alert]`); msg != "That code is not correct. Wait for a new code and try again." {
		t.Errorf("error message %q", msg)
	}
	if d, ok := b.lastDoc("/login/totp"); !ok || d.Status != http.StatusUnauthorized {
		t.Errorf("wrong code answered %d, want 401", d.Status)
	}
	if !b.has(`#code[aria-invalid="true"][aria-describedby~="form-error"]`) {
		t.Error("the code field is not marked invalid and tied to the error message")
	}
	b.shot("wrong-code", "")

	brSubmitCode(b, "/login/totp", u.Code(time.Now()))
	brExpectClaimsPage(b, rp, u)
	b.shot("claims", "")
}

var brRetryRe = regexp.MustCompile(`You can try again in about (\d+) minutes, after (\d\d:\d\d UTC on \d{1,2} [A-Z][a-z]{2} \d{4})\.`)

// TestBrowserLockoutPage: after --totp-max-failures wrong codes the next
// attempt, even with the right code, gets the locked page (HTTP 429) that
// says when to try again.
func TestBrowserLockoutPage(t *testing.T) {
	brRequireChromium(t)
	s := StartServer(t, append(fastPolicy, "--totp-max-failures", "3", "--totp-lock", "10m", "--totp-lock-max", "1h")...)
	u := AddUser(t, s.DB, "carol", "correct horse battery")
	rp := brStartDemoRP(t, s)
	b := brNewBrowser(t)

	brSigninPage(b, rp, s, "password", "")
	brSubmitPassword(b, u.Name, u.Password)
	b.waitVisible("code page", "#code")
	b.shot("code", "")
	for i := 1; i <= 3; i++ {
		brSubmitCode(b, "/login/totp", brWrongCode(u))
		b.waitVisible("error message", `p.error[role=alert]`)
		if d, ok := b.lastDoc("/login/totp"); !ok || d.Status != http.StatusUnauthorized {
			t.Fatalf("wrong code %d answered %d, want 401", i, d.Status)
		}
		b.shot(fmt.Sprintf("wrong-code-%d", i), "")
	}

	before := time.Now()
	brSubmitCode(b, "/login/totp", u.Code(time.Now()))
	after := time.Now()
	b.waitVisible("locked page", "h1")
	if h := b.text("h1"); h != "Too many attempts" {
		t.Fatalf("4th attempt shows %q, want the locked page", h)
	}
	d, ok := b.lastDoc("/login/totp")
	if !ok || d.Status != http.StatusTooManyRequests {
		t.Errorf("locked page status %d, want 429", d.Status)
	}
	if ra, err := strconv.Atoi(fmt.Sprint(d.Headers["Retry-After"])); err != nil || ra < 590 || ra > 600 {
		t.Errorf("Retry-After %v, want about 600 seconds", d.Headers["Retry-After"])
	}
	body := b.text("main")
	m := brRetryRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("locked page has no retry time:\n%s", body)
	}
	retryAt, err := time.Parse("15:04 UTC on 2 Jan 2006", m[2])
	if err != nil {
		t.Fatal(err)
	}
	// The page shows minutes: the time is the lock's end truncated to the minute.
	if lo, hi := before.Add(10*time.Minute-62*time.Second), after.Add(10*time.Minute+2*time.Second); retryAt.Before(lo) || retryAt.After(hi) {
		t.Errorf("retry time %s, want 10 minutes after the attempt (%s … %s)", retryAt, lo.UTC(), hi.UTC())
	}
	if m[1] != "10" {
		t.Errorf("retry in about %s minutes, want 10", m[1])
	}
	if !strings.Contains(b.text(`p.error[role=alert]`), "Too many failed attempts") {
		t.Error("locked page lacks the alert")
	}
	if b.has("#code") || b.has("button") {
		t.Error("locked page still offers a form")
	}
	b.shot("locked", "locked.png")
}

// TestBrowserEnrollmentQR: a user without an authenticator gets the
// enrollment page after the password; the test reads the QR code from a
// screenshot like a phone would, computes the code from the otpauth URI,
// saves the recovery codes and continues to the demo RP.
func TestBrowserEnrollmentQR(t *testing.T) {
	brRequireChromium(t)
	s := StartServer(t, fastPolicy...)
	CLI(t, s.DB, "correct horse battery\n", "user", "add", "erin", "--password-stdin", "--enroll-at-login")
	u := User{Name: "erin", Password: "correct horse battery"}
	rp := brStartDemoRP(t, s)
	b := brNewBrowser(t)

	brSigninPage(b, rp, s, "password", "")
	brSubmitPassword(b, u.Name, u.Password)
	b.waitVisible("enrollment page", "img.qr")
	b.step("QR image loaded", func(ctx context.Context) error {
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const i = document.querySelector('img.qr'); return !!i && i.complete && i.naturalWidth > 0 })()`,
			chromedp.WithPollingInterval(50*time.Millisecond)))
		return err
	})
	full := b.shot("enroll", "enroll.png")
	qrShot := b.elementShot("img.qr")
	if err := os.WriteFile(filepath.Join(b.shotsDir, "qr-element.png"), qrShot, 0o644); err != nil {
		t.Fatal(err)
	}
	uri, err := brDecodeQR(qrShot)
	if err != nil {
		// Say whether the page as a whole would scan, to tell a
		// cropping problem from an unreadable code.
		_, ferr := brDecodeQR(full)
		t.Fatalf("QR code element screenshot: %v (full page: %v)", err, ferr)
	}
	key, err := otp.NewKeyFromURL(uri)
	if err != nil || key.Type() != "totp" {
		t.Fatalf("QR code holds %q, not an otpauth://totp/ URI: %v", uri, err)
	}
	if key.AccountName() != "erin" || key.Issuer() == "" {
		t.Errorf("QR code account %q issuer %q", key.AccountName(), key.Issuer())
	}
	if shown := strings.ReplaceAll(b.text("code.secret"), " ", ""); shown != key.Secret() {
		t.Errorf("setup key on the page %q differs from the QR code's %q", shown, key.Secret())
	}
	codeAt := func(at time.Time) string {
		code, err := totp.GenerateCodeCustom(key.Secret(), at, totp.ValidateOpts{
			Period: uint(key.Period()), Digits: key.Digits(), Algorithm: key.Algorithm()})
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	// The previous step's code confirms, so the current one is new for the
	// TOTP step that ends the sign-in, as a later code would be for a user.
	brSubmitCode(b, "/login/enroll", codeAt(time.Now().Add(-30*time.Second)))
	b.waitVisible("recovery codes page", "textarea#codes")
	var codes []string
	b.step("read the recovery codes", func(ctx context.Context) error {
		v, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("textarea#codes")))
		codes = strings.Fields(v)
		return err
	})
	if len(codes) != 10 {
		t.Errorf("%d recovery codes, want 10: %q", len(codes), codes)
	}
	b.shot("recovery-codes", "")

	b.clickAndLoad("continue after the recovery codes", "a.button")
	b.waitVisible("code page after enrollment", `form[action="/login/totp"]`)
	brSubmitCode(b, "/login/totp", codeAt(time.Now()))
	brExpectClaimsPage(b, rp, u)
	b.shot("claims", "")
}

// TestBrowserRefusesFraming: a page of another origin that frames the
// provider's login page gets an error frame instead of the login form,
// while a frameable control page in the same kind of iframe renders.
func TestBrowserRefusesFraming(t *testing.T) {
	brRequireChromium(t)
	s := StartServer(t, fastPolicy...)
	rp := brStartDemoRP(t, s)
	b := brNewBrowser(t)
	// A real login page of this browser: if it rendered in the frame, it
	// would show the password form.
	loginURL := brSigninPage(b, rp, s, "password", "")

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Another site</title>
<style>body{font:16px sans-serif;margin:16px} figure{display:inline-block;vertical-align:top;margin:0 16px 0 0} iframe{border:1px solid #888;width:360px;height:560px}</style>
<h1>Another origin framing pages</h1>
<figure><figcaption>Control: a frameable page</figcaption><iframe name="control" src="/frameable"></iframe></figure>
<figure><figcaption>The provider's login page</figcaption><iframe name="idp" src="%s"></iframe></figure>`, strings.ReplaceAll(loginURL, `"`, "%22"))
	})
	mux.HandleFunc("GET /frameable", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><p id="marker">frameable page rendered</p>`)
	})
	other := httptest.NewServer(mux) // 127.0.0.1, another port: another origin
	defer other.Close()

	b.navigate(other.URL + "/")
	var control, idp *cdp.Frame
	b.step("both iframes navigated", func(ctx context.Context) error {
		for {
			control, idp = nil, nil
			res, err := chromedp.Call(ctx, page.GetFrameTree, cdp.Empty{})
			if err != nil {
				return err
			}
			for _, c := range res.FrameTree.ChildFrames {
				switch c.Frame.Name {
				case "control":
					control = c.Frame
				case "idp":
					idp = c.Frame
				}
			}
			if control != nil && idp != nil && control.URL != "about:blank" && idp.URL != "about:blank" && idp.URL != "" {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("frames control=%+v idp=%+v: %w", control, idp, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	b.shot("framed", "")

	if control.URL != other.URL+"/frameable" || control.UnreachableURL != "" {
		t.Errorf("control frame: url %q unreachable %q, want the frameable page rendered", control.URL, control.UnreachableURL)
	}
	if strings.HasPrefix(idp.URL, s.URL) && idp.UnreachableURL == "" {
		t.Errorf("the provider's login page rendered inside another origin's iframe (frame url %q)", idp.URL)
	}
	if idp.UnreachableURL != loginURL {
		t.Errorf("provider frame: url %q unreachable %q, want an error page for %q", idp.URL, idp.UnreachableURL, loginURL)
	}
	// The provider did answer the frame's request; the browser refused
	// to show it because of the response's headers.
	if d, ok := b.frameDoc(idp.ID); !ok {
		t.Errorf("no response for the provider frame")
	} else {
		xfo, csp := fmt.Sprint(d.Headers["X-Frame-Options"]), fmt.Sprint(d.Headers["Content-Security-Policy"])
		if xfo != "DENY" || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("provider frame response %d: X-Frame-Options %q, CSP %q", d.Status, xfo, csp)
		}
	}

	// What the frames' documents hold.
	var root *cdp.Node
	b.step("read the DOM with frames", func(ctx context.Context) error {
		depth, pierce := int64(-1), true
		res, err := chromedp.Call(ctx, dom.GetDocument, dom.GetDocumentParams{Depth: &depth, Pierce: &pierce})
		root = res.Root
		return err
	})
	frames := map[string]*cdp.Node{}
	brWalk(root, func(n *cdp.Node) {
		if n.LocalName == "iframe" {
			frames[brAttr(n, "name")] = n.ContentDocument
		}
	})
	if doc := frames["control"]; doc == nil || brFind(doc, "marker") == nil {
		t.Error("control frame: the frameable page's content is not in its document")
	}
	if doc := frames["idp"]; doc != nil && (brFind(doc, "username") != nil || brFind(doc, "password") != nil || strings.HasPrefix(doc.DocumentURL, s.URL)) {
		t.Errorf("provider frame document %q holds the login form", doc.DocumentURL)
	}
}

// frameDoc is the latest document response loaded into frame id.
func (b *brBrowser) frameDoc(id cdp.FrameID) (brDoc, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.docs) - 1; i >= 0; i-- {
		if b.docs[i].FrameID == id {
			return b.docs[i], true
		}
	}
	return brDoc{}, false
}

// brWalk calls fn for n and every node under it, frame documents included.
func brWalk(n *cdp.Node, fn func(*cdp.Node)) {
	if n == nil {
		return
	}
	fn(n)
	for _, c := range n.Children {
		brWalk(c, fn)
	}
	brWalk(n.ContentDocument, fn)
}

// brFind is the element with the given id under n, or nil.
func brFind(n *cdp.Node, id string) *cdp.Node {
	var found *cdp.Node
	brWalk(n, func(c *cdp.Node) {
		if found == nil && brAttr(c, "id") == id {
			found = c
		}
	})
	return found
}

// brAttr is an attribute of a protocol node, or "".
func brAttr(n *cdp.Node, name string) string {
	for i := 0; i+1 < len(n.Attributes); i += 2 {
		if n.Attributes[i] == name {
			return n.Attributes[i+1]
		}
	}
	return ""
}
