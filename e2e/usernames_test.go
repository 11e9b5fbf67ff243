package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestUsernamesRefuseInvisibleCharactersAndCLIEscapes: `user add` refuses
// format (bidi overrides, zero-width) and line or paragraph separator
// characters, `client add` refuses client ids outside RFC 6749's VSCHAR;
// and every table the CLI prints escapes what is not printable, also for
// rows written before these rules.
func TestUsernamesRefuseInvisibleCharactersAndCLIEscapes(t *testing.T) {
	t.Parallel()
	s := StartServer(t)
	for _, name := range []string{"evil\u202egnp.exe", "two\u2028lines", "para\u2029graph", "zero\u200bwidth", "soft\u00adhyphen", "bell\u0007"} {
		if _, errOut, err := CLIResult(s.DB, "correct horse battery\n", "user", "add", name, "--password-stdin", "--enroll-at-login"); err == nil {
			t.Errorf("user add %q accepted", name)
		} else if strings.ContainsAny(errOut, "\u202e\u2028\u2029\u200b\u00ad\u0007") {
			t.Errorf("user add %q: the error repeats the raw character: %q", name, errOut)
		}
	}
	for _, id := range []string{"app\u202e", "tab\tapp", "ünïcode"} {
		if _, _, err := CLIResult(s.DB, "", "client", "add", id, "--redirect-uri", "https://rp.example/cb"); err == nil {
			t.Errorf("client add %q accepted", id)
		}
	}
	// Rows from before the rules (or written by another tool).
	raw := "legacy\u202eexe.txt\u2028forged line\u2029"
	grwExec(t, s.DB, `INSERT INTO users (id, username, name, email, created_at) VALUES ('legacy-id', ?, ?, ?, 1)`, raw, raw, raw)
	grwExec(t, s.DB, `INSERT INTO audit_events (time, type, user_id, username, client_id, client_ip, request_id, detail) VALUES (?, ?, 'legacy-id', ?, ?, '127.0.0.1', 'r', ?)`,
		time.Now().Unix(), "odd\u202etype", raw, raw, raw)
	grwExec(t, s.DB, `INSERT INTO clients (id, name, redirect_uris, post_logout_redirect_uris, public, pkce_required, created_at) VALUES (?, '', ?, '[]', 1, 1, 1)`,
		"cl\u202eient", `["https://rp.example/cb\u2028x"]`)
	for _, args := range [][]string{{"audit"}, {"user", "list"}, {"client", "list"}} {
		out := CLI(t, s.DB, "", args...)
		if strings.ContainsAny(out, "\u202e\u2028\u2029") {
			t.Errorf("idp %s prints a raw bidi override or separator:\n%q", strings.Join(args, " "), out)
		}
		if !strings.Contains(out, `\u202e`) {
			t.Errorf("idp %s does not show the escaped character:\n%s", strings.Join(args, " "), out)
		}
	}
}
