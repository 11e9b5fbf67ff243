package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The browser binding (docs/THREAT-MODEL.md rule 7): an authorization
// code is issued only into the browser that called /authorize, whatever shape the callback request has
// and whichever browser typed the credentials.

// bndAuthorize sends b to /authorize for c and returns the flow without
// opening the login page.
func bndAuthorize(t *testing.T, b *Browser, s *Server, c Client) *Flow {
	t.Helper()
	u, f := AuthorizeURL(s, c, AuthParams{})
	f.B = b
	r := b.Get(u)
	if r.Status != http.StatusFound || !strings.Contains(r.Location, "/login/") {
		t.Fatalf("authorize: want 302 to /login/, got %d %q", r.Status, r.Location)
	}
	f.LoginURL = r.Location
	lu, err := url.Parse(r.Location)
	if err != nil {
		t.Fatal(err)
	}
	f.Form = url.Values{"id": {lu.Query().Get("id")}}
	return f
}

// bndCallbackShapes are the callback requests an attacker holding its own
// request own can send for the victim's request victim.
func bndCallbackShapes(base, victim, own string) map[string]*http.Request {
	cb := base + "/authorize/callback"
	q := url.QueryEscape
	mk := func(method, u, body string) *http.Request {
		var req *http.Request
		if body == "" {
			req, _ = http.NewRequest(method, u, nil)
		} else {
			req, _ = http.NewRequest(method, u, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		return req
	}
	return map[string]*http.Request{
		"GET victim id":                 mk(http.MethodGet, cb+"?id="+q(victim), ""),
		"POST own query, victim body":   mk(http.MethodPost, cb+"?id="+q(own), "id="+q(victim)),
		"POST body only":                mk(http.MethodPost, cb, "id="+q(victim)),
		"POST own in both":              mk(http.MethodPost, cb+"?id="+q(own), "id="+q(own)),
		"GET own then victim in query":  mk(http.MethodGet, cb+"?id="+q(own)+"&id="+q(victim), ""),
		"GET victim then own in query":  mk(http.MethodGet, cb+"?id="+q(victim)+"&id="+q(own), ""),
		"GET own query, victim body":    mk(http.MethodGet, cb+"?id="+q(own), "id="+q(victim)),
		"PUT own query, victim body":    mk(http.MethodPut, cb+"?id="+q(own), "id="+q(victim)),
		"GET no id":                     mk(http.MethodGet, cb, ""),
		"GET empty id then victim":      mk(http.MethodGet, cb+"?id=&id="+q(victim), ""),
		"GET semicolon-separated pair":  mk(http.MethodGet, cb+"?id="+q(own)+";id="+q(victim), ""),
		"GET victim with trailing path": mk(http.MethodGet, cb+"/?id="+q(victim), ""),
	}
}

// bndTryCallbacks sends every shape from x and fails for each answer that
// carries an authorization code. It returns the number of shapes tried.
func bndTryCallbacks(t *testing.T, x *Browser, s *Server, victim, own string, attackerOwnsVictim bool) int {
	t.Helper()
	shapes := bndCallbackShapes(s.URL, victim, own)
	for name, req := range shapes {
		p, err := atkDo(x, req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if atkHasCode(p.Location) || strings.Contains(p.Body, "code=") {
			t.Errorf("%s: a code reached the attacker's browser: %d %s", name, p.Status, p.Location)
		}
		// Every shape is an error: the victim's request is not bound to
		// this browser, and the attacker's own request is not done.
		// no code.
		if name == "GET victim id" && attackerOwnsVictim && p.Status == http.StatusFound && strings.Contains(p.Location, "error=") {
			// The attacker's browser created the request the victim was
			// lured into: the binding is its own, but nothing was
			// completed there, so the answer is an OAuth error.
			continue
		}
		if p.Status < 400 || p.Status > 499 {
			t.Errorf("%s: want a 4xx error page, got %d %s", name, p.Status, p.Location)
		}
	}
	return len(shapes)
}

// TestAttackCallbackIDPollution: the victim finishes her own sign-in and
// has not yet followed the redirect to the callback; the attacker, who
// holds a request of its own, sends the callback with her request's id in
// the body, in a duplicated query parameter, and in every other shape.
// None yields a code; the victim then gets hers.
func TestAttackCallbackIDPollution(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u := confNewUser(t, p.s)
	victim := NewBrowser(t, "127.0.0.2")
	vf, _ := confStart(t, victim, p.s, p.a, AuthParams{})
	done := confToCallback(t, vf, u, false)

	attacker := NewBrowser(t, "127.0.0.3")
	// The attacker's own request, opened in its own browser (which, before
	// the fix, was what bound it).
	af, _ := confStart(t, attacker, p.s, p.a, AuthParams{})
	n := bndTryCallbacks(t, attacker, p.s, vf.Form.Get("id"), af.Form.Get("id"), false)

	code := vf.CodeFrom(vf.Follow(done))
	tok, err := p.rpa.Exchange(vf, code)
	if err != nil {
		t.Fatalf("the victim's own exchange: %v", err)
	}
	confCheckID(t, p.s, p.rpa, tok, vf, u, p.a)
	t.Logf("%d callback shapes from the attacker's browser: no code; the victim's browser got hers", n)
}

// TestAttackVictimCompletesAttackersRequest: the attacker calls /authorize
// itself and sends the victim the genuine login link. Whatever path the
// victim would take (password and TOTP, enrollment, recovery code, an SSO
// session that needs no typing), the link is refused in her browser, and no
// callback shape gives a code to anyone.
func TestAttackVictimCompletesAttackersRequest(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	for _, path := range []string{"password", "enrollment", "recovery", "sso"} {
		t.Run(path, func(t *testing.T) {
			var u User
			switch path {
			case "enrollment":
				u = enrAddUserAtLogin(t, p.s.DB, "bnd-enr-"+strings.ToLower(randString()[:6]), confPassword)
			default:
				u = confNewUser(t, p.s)
			}
			var recovery []string
			if path == "recovery" {
				out := CLI(t, p.s.DB, "", "user", "recovery-codes", u.Name)
				for _, l := range strings.Split(out, "\n") {
					if l = strings.TrimSpace(l); strings.Count(l, "-") == 4 && len(l) == 30 {
						recovery = append(recovery, l)
					}
				}
				if len(recovery) == 0 {
					t.Fatalf("no recovery codes in %q", out)
				}
			}
			victim := NewBrowser(t, "127.0.0.4")
			if path == "sso" {
				// The victim is signed in at the provider already.
				confLogin(t, victim, p.s, p.a, AuthParams{}, u, false)
			}
			attacker := NewBrowser(t, "127.0.0.5")
			af := bndAuthorize(t, attacker, p.s, p.a)
			own, _ := confStart(t, attacker, p.s, p.a, AuthParams{})

			page := victim.Get(af.LoginURL)
			if page.Status == http.StatusForbidden && strings.Contains(page.Body, "started in another browser") {
				// The fix: the request belongs to the attacker's browser.
				if strings.Contains(page.Body, `name="password"`) || page.Location != "" {
					t.Errorf("refusal page carries a form or a redirect: %q", page.Location)
				}
			} else {
				t.Errorf("the victim's browser was served a request another browser created: %d %q", page.Status, page.Location)
				vf := &Flow{B: victim, S: p.s, C: p.a, LoginURL: af.LoginURL, Form: Hidden(page.Body)}
				bndVictimSignsIn(t, vf, page, path, u, recovery)
			}
			bndTryCallbacks(t, attacker, p.s, af.Form.Get("id"), own.Form.Get("id"), true)
			// Nor does the victim's browser get a code for it.
			for name, req := range bndCallbackShapes(p.s.URL, af.Form.Get("id"), af.Form.Get("id")) {
				if r, err := atkDo(victim, req); err == nil && (atkHasCode(r.Location) || strings.Contains(r.Body, "code=")) {
					t.Errorf("victim %s: a code for the attacker's request: %s", name, r.Location)
				}
			}
		})
	}
}

// bndVictimSignsIn walks the victim through path on a page she should never
// have been shown (only reached on a broken build), stopping before the
// callback.
func bndVictimSignsIn(t *testing.T, f *Flow, page Page, path string, u User, recovery []string) {
	t.Helper()
	switch path {
	case "sso":
		return // the SSO session completed the request on the page load
	}
	if r := f.Password(u.Name, u.Password); r.Status != http.StatusSeeOther {
		t.Fatalf("password: %d", r.Status)
	}
	next := f.B.Get(f.LoginURL)
	f.Form = Hidden(next.Body)
	switch path {
	case "password":
		f.TOTP(confTOTP(u, false))
	case "enrollment":
		secret := enrSecret(t, next.Body)
		enrPost(f, "/login/enroll", url.Values{"code": {enrCode(t, secret, time.Now())}})
	case "recovery":
		f.Form = Hidden(f.B.Get(f.S.URL + "/login/recovery?id=" + url.QueryEscape(f.Form.Get("id"))).Body)
		enrPost(f, "/login/recovery", url.Values{"recovery_code": {recovery[0]}})
	}
}

// TestContinueStepBoundAndSingleUse: after enrollment the "Continue" link
// of the recovery-codes page leads to the TOTP step, after which the
// request waits, done and code-less, behind the callback. Neither gives
// anything to another browser; the signing-in browser gets its code once,
// never a second one.
func TestContinueStepBoundAndSingleUse(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u := enrAddUserAtLogin(t, p.s.DB, "bnd-cont-"+strings.ToLower(randString()[:6]), confPassword)
	b := NewBrowser(t, "")
	f := b.StartFlow(p.s, p.a, AuthParams{})
	page := enrPasswordToEnroll(t, f, u)
	secret := enrSecret(t, page.Body)
	codesPage := enrPost(f, "/login/enroll", url.Values{"code": {enrCode(t, secret, time.Now().Add(-30*time.Second))}})
	m := enrLinkRe.FindStringSubmatch(codesPage.Body)
	if codesPage.Status != http.StatusOK || m == nil {
		t.Fatalf("want the recovery-codes page with a Continue link, got %d\n%s", codesPage.Status, codesPage.Body)
	}
	cont := absURL(p.s, strings.ReplaceAll(m[1], "&amp;", "&"))
	other := NewBrowser(t, "")
	if r := other.Get(cont); r.Status != http.StatusForbidden || atkHasCode(r.Location) {
		t.Errorf("Continue in another browser: %d %q, want 403 without a code", r.Status, r.Location)
	}
	next := b.Get(cont)
	if atkHasCode(next.Location) || !atkIsTOTPForm(next) {
		t.Fatalf("Continue after enrollment: want the TOTP form, got %d %q", next.Status, next.Location)
	}
	f.Form = Hidden(next.Body)
	done := f.TOTP(enrCode(t, secret, time.Now()))
	if done.Status != http.StatusSeeOther {
		t.Fatalf("TOTP step after enrollment: %d", done.Status)
	}
	callback := done.Location
	if r := other.Get(callback); r.Status != http.StatusForbidden || atkHasCode(r.Location) {
		t.Errorf("the callback in another browser: %d %q, want 403 without a code", r.Status, r.Location)
	}
	code := f.CodeFrom(f.Follow(b.Get(callback)))
	if _, err := p.rpa.Exchange(f, code); err != nil {
		t.Fatalf("exchange: %v", err)
	}
	for _, again := range []string{cont, callback} {
		r, _ := confFollow(t, b, p.s, again)
		if atkHasCode(r.Location) {
			t.Errorf("%s again issued another code: %s", again, r.Location)
		}
	}
	if q := confRedirectQuery(t, b.Get(callback).Location, p.a.RedirectURI); q.Get("error") != "access_denied" {
		t.Errorf("second callback: want access_denied, got %v", q)
	}
}

// TestBindingMismatchAuditedOnEveryPage: a flow's pages opened in another
// browser are refused and audited alike (the recovery page used to refuse
// without an audit row).
func TestBindingMismatchAuditedOnEveryPage(t *testing.T) {
	t.Parallel()
	s := StartServer(t, fastPolicy...)
	u := AddUser(t, s.DB, "bianca", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	f := atkToTOTP(t, NewBrowser(t, "127.0.0.2"), s, c, u.Name, u.Password)
	id := f.Form.Get("id")
	other := NewBrowser(t, "127.0.0.3")
	for _, path := range []string{"/login/?id=", "/login/recovery?id="} {
		if p := other.Get(s.URL + path + url.QueryEscape(id)); p.Status != http.StatusForbidden {
			t.Errorf("%s in another browser: %d, want 403", path, p.Status)
		}
	}
	var where []string
	for _, e := range atkOfType(atkAudit(t, s.DB, ""), "binding_mismatch") {
		where = append(where, e.Detail)
	}
	if len(where) != 2 || !strings.Contains(strings.Join(where, " "), "/login/recovery") {
		t.Errorf("binding_mismatch rows: %q, want one per page, the recovery page included", where)
	}
}
