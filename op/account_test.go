package op

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/login"
)

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
