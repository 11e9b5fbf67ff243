package op

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/totp-idp/idp/op/login"
	"github.com/totp-idp/idp/op/pages"
)

// TestRouteVariantsReachNoHandler: protocolRoutes attaches each route's
// defences by its exact path, so no spelling of a guarded path may reach
// the library's handler without them. Trailing slashes, case, an encoded
// slash find no route (404); unclean paths are redirected to the clean
// one by net/http before any handler runs.
func TestRouteVariantsReachNoHandler(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, route := range []string{"/oauth/token", "/revoke", "/oauth/introspect", "/userinfo", "/authorize", login.CallbackPath, "/end_session", "/keys"} {
		// Percent-encoded spellings decode to the route's path, but the
		// library routes on the raw path: they must find no wrapper either.
		encoded := fmt.Sprintf("/%%%02X%s", route[1], route[2:])
		innerSlash := "/" + strings.ReplaceAll(route[1:], "/", "%2F")
		for _, p := range []string{route + "/", strings.ToUpper(route), route + "%2F", "/." + route, strings.Replace(route, "/", "//", 1), encoded, innerSlash} {
			if p == route {
				continue
			}
			for _, m := range []string{http.MethodGet, http.MethodPost} {
				req, _ := http.NewRequest(m, e.ts.URL+p, strings.NewReader("grant_type=authorization_code&code=x"))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := e.browser().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				switch {
				case resp.StatusCode == http.StatusNotFound && resp.Header.Get("Cache-Control") != "no-store":
					t.Errorf("%s %s: 404 through a route's wrappers (Cache-Control %q)", m, p, resp.Header.Get("Cache-Control"))
				case resp.StatusCode == http.StatusNotFound, resp.StatusCode == http.StatusTemporaryRedirect, resp.StatusCode == http.StatusMovedPermanently:
				default:
					t.Errorf("%s %s: %d, want no handler", m, p, resp.StatusCode)
				}
			}
		}
	}
}

// TestNoLibraryRouteBesideTheTable: what the table does not list never
// reaches a library handler. The discovery document and the health checks
// are ours for every method (others get 405, not the library's document,
// which lists grants this provider does not offer); the library's device
// authorization endpoint is not offered at all.
func TestNoLibraryRouteBesideTheTable(t *testing.T) {
	e := newTestEnv(t, nil)
	do := func(m, p string) (int, http.Header, string) {
		req, _ := http.NewRequest(m, e.ts.URL+p, strings.NewReader("client_id=app&client_secret=s&scope=openid"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := e.browser().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	for _, p := range []string{"/.well-known/openid-configuration", "/healthz", "/ready"} {
		if status, _, body := do(http.MethodGet, p); status != http.StatusOK || strings.Contains(body, "implicit") {
			t.Errorf("GET %s: %d %q", p, status, body)
		}
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			status, h, body := do(m, p)
			if status != http.StatusMethodNotAllowed || h.Get("Allow") != "GET, HEAD" || strings.Contains(body, "grant_types_supported") {
				t.Errorf("%s %s: %d, Allow %q, %q", m, p, status, h.Get("Allow"), body)
			}
		}
	}
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if status, _, body := do(m, "/device_authorization"); status != http.StatusNotFound {
			t.Errorf("%s /device_authorization: %d %q", m, status, body)
		}
	}
}

// TestEndSessionErrorPage: a logout request the library refuses (an
// id_token_hint that does not verify) is answered with the error page,
// not the library's JSON: end_session is a browser route.
func TestEndSessionErrorPage(t *testing.T) {
	e := newTestEnv(t, nil)
	resp, err := e.browser().Get(e.ts.URL + "/end_session?id_token_hint=garbage")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(b), e.srv.pages.Text(pages.MsgBadLogout)) || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("%d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
}
