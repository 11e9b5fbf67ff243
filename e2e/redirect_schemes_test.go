package e2e

import (
	"fmt"
	"testing"
)

// TestClientAddRedirectURISchemes: `idp client add` accepts https, http
// only for loopback IP literals (RFC 8252 §7.3, §8.3: not localhost), and
// private-use reverse-DNS schemes only for public (native) clients
// (RFC 8252 §7.1); never a fragment or user info (RFC 6749 §3.1.2), and
// never script, data or file URIs. The same rules hold for post-logout
// redirect URIs.
func TestClientAddRedirectURISchemes(t *testing.T) {
	t.Parallel()
	db := StartServer(t).DB
	n := 0
	try := func(public bool, flag, uri string) error {
		n++
		args := []string{"client", "add", fmt.Sprintf("c%d", n)}
		if public {
			args = append(args, "--public")
		}
		if flag == "--post-logout-redirect-uri" {
			args = append(args, "--redirect-uri", "https://rp.example/cb")
		}
		args = append(args, flag, uri)
		_, _, err := CLIResult(db, "", args...)
		return err
	}
	for _, tc := range []struct {
		uri            string
		public, confid bool // accepted for a public / a confidential client
	}{
		{"https://app.example/cb", true, true},
		{"https://app.example:8443/cb?x=1", true, true},
		{"http://127.0.0.1:9000/callback", true, true},
		{"http://127.0.0.1/cb", true, true},
		{"http://[::1]:9000/cb", true, true},
		{"com.example.app:/oauth2redirect", true, false},
		{"com.example.app://callback", true, false},
		{"http://app.example/cb", false, false},
		{"http://localhost:9000/cb", false, false},
		{"http://192.168.1.10/cb", false, false},
		{"https://app.example/cb#frag", false, false},
		{"https://app.example/cb#", false, false},
		{"https://user:pw@app.example/cb", false, false},
		{"https:///cb", false, false},
		{"https:app.example/cb", false, false},
		{"javascript:alert(1)", false, false},
		{"JavaScript:alert(1)", false, false},
		{"data:text/html,<script>alert(1)</script>", false, false},
		{"file:///etc/passwd", false, false},
		{"vbscript:msgbox", false, false},
		{"myapp:/cb", false, false},
		{"ftp://app.example/cb", false, false},
		{"https://app.example/cb?a=1;b=2", false, false},
		{"https://app.example/cb?a=%zz", false, false},
		{"https://app.example/cb?tenant=1&x=y", true, true},
		{"/relative/cb", false, false},
		{"", false, false},
	} {
		for _, flag := range []string{"--redirect-uri", "--post-logout-redirect-uri"} {
			for _, public := range []bool{true, false} {
				want := tc.confid
				if public {
					want = tc.public
				}
				err := try(public, flag, tc.uri)
				if want && err != nil {
					t.Errorf("%s %q (public %t) refused: %v", flag, tc.uri, public, err)
				}
				if !want && err == nil {
					t.Errorf("%s %q (public %t) accepted", flag, tc.uri, public)
				}
			}
		}
	}
}
