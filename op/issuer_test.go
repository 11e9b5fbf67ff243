package op

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestAuthorizationResponseIssuerWriter(t *testing.T) {
	s := &Server{cfg: Config{Issuer: "https://id.example"}}
	for _, tc := range []struct{ path, location, want string }{
		{"/authorize/callback", "https://app.example/cb?x=1&code=c&state=s", "https://app.example/cb?code=c&iss=https%3A%2F%2Fid.example&state=s&x=1"},
		{"/authorize", "https://app.example/cb?error=login_required&state=s", "https://app.example/cb?error=login_required&iss=https%3A%2F%2Fid.example&state=s"},
		{"/authorize/callback", "https://app.example/cb#code=c&state=s", "https://app.example/cb#code=c&iss=https%3A%2F%2Fid.example&state=s"},
		{"/authorize", "com.example.app:/cb?code=c", "com.example.app:/cb?code=c&iss=https%3A%2F%2Fid.example"},
		// The login page is left alone (the writer is mounted only on
		// /authorize and the callback: protocolRoutes).
		{"/authorize", "/login/?id=abc", "/login/?id=abc"},
	} {
		h := s.authorizationResponseIssuer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, tc.location, http.StatusFound)
		}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if got := rec.Header().Get("Location"); got != tc.want {
			t.Errorf("%s → %s: Location %s, want %s", tc.path, tc.location, got, tc.want)
		}
		if u, _ := url.Parse(tc.want); u.Scheme != "" && rec.Body.Len() != 0 {
			t.Errorf("%s: body of the rewritten redirect kept: %q", tc.location, rec.Body.String())
		}
	}
}
