package op

import (
	"net/http"
	"strings"
	"testing"

	"github.com/totp-idp/idp/op/login"
)

// TestRouteVariantsReachNoHandler: protocolRoutes attaches each route's
// defences by its exact path, so no spelling of a guarded path may reach
// the library's handler without them. Trailing slashes, case, an encoded
// slash find no route (404); unclean paths are redirected to the clean
// one by net/http before any handler runs.
func TestRouteVariantsReachNoHandler(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, route := range []string{"/oauth/token", "/revoke", "/oauth/introspect", "/userinfo", "/authorize", login.CallbackPath, "/end_session", "/keys"} {
		for _, p := range []string{route + "/", strings.ToUpper(route), route + "%2F", "/." + route, strings.Replace(route, "/", "//", 1)} {
			for _, m := range []string{http.MethodGet, http.MethodPost} {
				req, _ := http.NewRequest(m, e.ts.URL+p, strings.NewReader("grant_type=authorization_code&code=x"))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := e.browser().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusNotFound, http.StatusTemporaryRedirect, http.StatusMovedPermanently:
				default:
					t.Errorf("%s %s: %d, want no handler", m, p, resp.StatusCode)
				}
			}
		}
	}
}
