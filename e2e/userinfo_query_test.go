package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestUserinfoRefusesAccessTokenInQuery: an access token in the URL
// (RFC 6750 §2.3, removed by OAuth 2.1) lands in logs, histories and
// Referer headers; userinfo refuses it with 400 invalid_request and a
// Bearer challenge, whatever the method. Header and form body still work.
func TestUserinfoRefusesAccessTokenInQuery(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	_, _, tok := confTokens(t, p.s, p.a, p.rpa, nil, "openid profile")
	at := tok.AccessToken
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		var body *strings.Reader
		hdr := map[string]string{}
		if method == http.MethodPost {
			body = strings.NewReader("")
			hdr["Content-Type"] = "application/x-www-form-urlencoded"
		}
		var st int
		var b []byte
		var h http.Header
		if body != nil {
			st, b, h = confDo(t, method, p.s.URL+"/userinfo?"+url.Values{"access_token": {at}}.Encode(), body, hdr)
		} else {
			st, b, h = confDo(t, method, p.s.URL+"/userinfo?"+url.Values{"access_token": {at}}.Encode(), nil, hdr)
		}
		if st != http.StatusBadRequest || !strings.Contains(string(b), "invalid_request") ||
			!strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || strings.Contains(string(b), `"sub"`) {
			t.Errorf("%s /userinfo?access_token=…: %d %q %s, want 400 invalid_request with a Bearer challenge", method, st, h.Get("WWW-Authenticate"), b)
		}
	}
	for _, mode := range []string{"get", "post-body"} {
		if st, info, _ := confUserinfo(t, p.s, mode, at); st != http.StatusOK || info["sub"] == nil {
			t.Errorf("userinfo (%s): %d %v", mode, st, info)
		}
	}
}
