package op

import (
	"net/http"
	"strings"
	"testing"

	"github.com/totp-idp/idp/op/pages"
)

// TestLibraryErrorTexts pins what htmlErrors reads in zitadel/oidc's
// plain-text answers: an unknown client and an unregistered redirect URI
// must still become their own pages. If a library upgrade rewords its
// errors, this fails instead of every such page silently becoming the
// generic one.
func TestLibraryErrorTexts(t *testing.T) {
	e := newTestEnv(t, nil)
	msgs := e.srv.pages
	for _, tc := range []struct {
		name, key, value, want string
	}{
		{"unknown client", "client_id", "nobody", pages.MsgUnknownClient},
		{"unregistered redirect URI", "redirect_uri", "https://evil.example/cb", pages.MsgBadRedirect},
	} {
		q := authorizeQuery()
		q.Set(tc.key, tc.value)
		status, body := get(t, e.browser(), e.ts.URL+"/authorize?"+q.Encode())
		if status != http.StatusBadRequest || !strings.Contains(body, msgs.Text(tc.want)) {
			t.Errorf("%s: %d, want 400 with %q\n%s", tc.name, status, msgs.Text(tc.want), body)
		}
		if strings.Contains(body, "evil.example") {
			t.Errorf("%s: the page links to the unregistered address", tc.name)
		}
	}
}
