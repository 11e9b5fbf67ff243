package op

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/storage"
)

// Fuzz targets for every parser of untrusted input in op (issue 10 item
// 6): codes and recovery codes as typed, device cookies, sealed values,
// and the password form through the real handler stack. `make fuzz` runs
// each; seeds are the attack suite's odd inputs.

// FuzzPasswordForm drives the real handler stack (in process, SQLite in a
// temporary directory) with arbitrary usernames and passwords: every
// answer is one the login defines (303 on, 400 malformed, 401 wrong, 429
// locked), never a server error, and only the right password passes.
func FuzzPasswordForm(f *testing.F) {
	e := newTestEnv(f, func(c *Config) { c.PasswordPolicy.FreeFailures, c.PasswordPolicy.HardLimit = 100, 100 })
	for _, s := range [][2]string{{"ann", "correct horse"}, {"ANN ", "correct horse"}, {"ａｎｎ", "wrong"}, {"a\u202enn", "x"},
		{"", ""}, {"ann", strings.Repeat("x", password.MaxBytes+1)}, {"\xff", "\xfe"}, {"nobody", "correct horse"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, username, typed string) {
		resp := startFlow(t, e).post(t, "/login/password", url.Values{"username": {username}, "password": {typed}})
		switch resp.StatusCode {
		case http.StatusSeeOther:
			if canon, err := storage.CanonicalUsername(username); err != nil || canon != "ann" || password.Normalize(typed) != "correct horse" {
				t.Fatalf("username %q, password %q passed the password step", username, typed)
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusTooManyRequests:
		default:
			t.Fatalf("username %q, password %q: status %d", username, typed, resp.StatusCode)
		}
	})
}
