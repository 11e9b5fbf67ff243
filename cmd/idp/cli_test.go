package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func runCLI(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestCLIUserLifecycle drives the user commands against a temporary
// database: add (JSON contract), show, unlock, delete, audit.
func TestCLIUserLifecycle(t *testing.T) {
	db := filepath.Join(t.TempDir(), "idp.db")
	if _, _, err := runCLI(t, "s3cret-password\n", "user", "add", "nokey", "--db", db, "--password-stdin"); err == nil || !strings.Contains(err.Error(), "secret key") {
		t.Fatalf("user add without a secret key: %v", err)
	}
	if err := seal.GenerateKeyFile(db + ".key"); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "s3cret-password\n", "user", "add", "Alice", "--db", db, "--password-stdin", "--json", "--email", "a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	var u struct {
		ID       string `json:"id"`
		Username string `json:"username"`
		TOTPURI  string `json:"totp_uri"`
	}
	if err := json.Unmarshal([]byte(out), &u); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if u.ID == "" || u.Username != "alice" || !strings.HasPrefix(u.TOTPURI, "otpauth://totp/") {
		t.Fatalf("user add json: %+v", u)
	}
	if _, _, err := runCLI(t, "s3cret-password\n", "user", "add", "ALICE", "--db", db, "--password-stdin"); err == nil {
		t.Error("duplicate username (other case) accepted")
	}
	if _, _, err := runCLI(t, "short\n", "user", "add", "bob", "--db", db, "--password-stdin"); err == nil {
		t.Error("7-character password accepted")
	}
	out, _, err = runCLI(t, "", "user", "show", " ALICE ", "--db", db)
	if err != nil || !strings.Contains(out, "username:   alice") || !strings.Contains(out, "totp:       true") {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if out, _, err = runCLI(t, "", "user", "unlock", "alice", "--db", db); err != nil || !strings.Contains(out, "Unlocked alice") {
		t.Fatalf("unlock: %v %s", err, out)
	}
	out, _, err = runCLI(t, "", "audit", "--db", db, "--user", "alice", "--json")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []string{`"event":"user_created"`, `"event":"totp_enrolled"`, `"event":"unlock"`} {
		if !strings.Contains(out, ev) {
			t.Errorf("audit lacks %s:\n%s", ev, out)
		}
	}
	if strings.Contains(out, "s3cret-password") {
		t.Error("audit contains the password")
	}
	if _, _, err := runCLI(t, "", "user", "delete", "alice", "--db", db); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "", "user", "show", "alice", "--db", db); err == nil {
		t.Error("deleted user still shown")
	}
}

func TestCLIClientAdd(t *testing.T) {
	db := filepath.Join(t.TempDir(), "idp.db")
	out, _, err := runCLI(t, "", "client", "add", "web", "--redirect-uri", "https://app.example/cb", "--json", "--db", db)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.ClientID != "web" || len(c.ClientSecret) < 43 {
		t.Fatalf("client add json %q: %v", out, err)
	}
	out, _, err = runCLI(t, "", "client", "list", "--db", db)
	if err != nil || !strings.Contains(out, "web") || strings.Contains(out, c.ClientSecret) {
		t.Fatalf("client list: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, "", "client", "add", "spa", "--public", "--pkce=optional", "--redirect-uri", "http://127.0.0.1/cb", "--db", db); err == nil {
		t.Error("public client with optional PKCE accepted")
	}
	if _, _, err := runCLI(t, "", "client", "add", "nouri", "--db", db); err == nil {
		t.Error("client without redirect URI accepted")
	}
	if _, _, err := runCLI(t, "", "client", "add", "frag", "--redirect-uri", "https://app.example/cb#x", "--db", db); err == nil {
		t.Error("redirect URI with fragment accepted")
	}
}

func TestCLIUsageErrors(t *testing.T) {
	// A usage error creates nothing: no database appears in the working
	// directory (the default --db).
	dir := t.TempDir()
	t.Chdir(dir)
	for _, args := range [][]string{{}, {"bogus"}, {"user"}, {"user", "frobnicate"}, {"client", "frobnicate"}, {"keys", "frobnicate"},
		{"client", "add", "x", "--pkce=maybe", "--redirect-uri", "https://a/b"},
		// The flag package's own refusals are usage errors too (B-F8).
		{"user", "update", "x", "--email-verified=maybe"}, {"user", "show", "x", "--no-such-flag"},
		{"serve", "--mail-interval", "0", "--listen", "127.0.0.1:0"}} { // it panicked once listening (review of issue 13, F-2)
		_, _, err := runCLI(t, "", args...)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("%v: err %v (exit %d), want usage error", args, err, exitCode(err))
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("%v left %s in the working directory", args, left[0].Name())
			for _, f := range left {
				os.Remove(filepath.Join(dir, f.Name()))
			}
		}
	}
}

func TestServeRejectsNonLoopbackHTTPIssuer(t *testing.T) {
	db := filepath.Join(t.TempDir(), "idp.db")
	_, _, err := runCLI(t, "", "serve", "--db", db, "--listen", "127.0.0.1:0", "--issuer", "http://id.example.com")
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err = %v", err)
	}
}

// TestServeNamesRefusedFlags: a configuration op.Config.Validate refuses
// is a usage error naming each offending flag, given before anything is
// created on disk.
func TestServeNamesRefusedFlags(t *testing.T) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--totp-lock-max", "1m"}, []string{"--totp-lock-max: 1m0s is shorter than the first lock (15m0s)"}},
		{[]string{"--password-hard-limit", "0"}, []string{"--password-hard-limit: must be between", "NIST SP 800-63B-4"}},
		{[]string{"--totp-hard-limit", "101", "--totp-max-failures", "0"}, []string{"--totp-hard-limit:", "--totp-max-failures:"}},
		{[]string{"--session-idle-timeout", "13h"}, []string{"--session-idle-timeout: 13h0m0s is longer than the session lifetime"}},
		{[]string{"--hash-concurrency", "-1"}, []string{"--hash-concurrency:"}},
		{[]string{"--access-token-lifetime", "0s"}, []string{"--access-token-lifetime: must be longer than 0"}},
		{[]string{"--key-retention", "30m"}, []string{"--key-retention: 30m0s is shorter than the ID token lifetime"}},
		{[]string{"--enroll-within", "-1h"}, []string{"--enroll-within: must be longer than 0"}},
	}
	for _, tc := range cases {
		db := filepath.Join(t.TempDir(), "idp.db")
		args := append([]string{"serve", "--db", db, "--listen", "127.0.0.1:0"}, tc.args...)
		_, _, err := runCLI(t, "", args...)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("%v: err %v (exit %d), want a usage error", tc.args, err, exitCode(err))
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %q lacks %q", tc.args, err, w)
			}
		}
		if _, serr := os.Stat(db); serr == nil {
			t.Errorf("%v: the database was created before the flags were checked", tc.args)
		}
	}
}

// TestCLIPasswordRules: `user add` applies the password rules (NIST SP
// 800-63B-4 §3.1.1.2) and says which one refused; --allow-weak skips them
// for a migration and the audit trail records it.
func TestCLIPasswordRules(t *testing.T) {
	db := filepath.Join(t.TempDir(), "idp.db")
	if err := seal.GenerateKeyFile(db + ".key"); err != nil {
		t.Fatal(err)
	}
	for pw, want := range map[string]string{
		"iloveyou":        "list of common and breached passwords",
		"short":           "at least 8 characters",
		"1234567890":      "list of common", // on the list before it is a sequence
		"xx-carla-2026-x": "contains the username",
		"qwertzuiopü":     "",
	} {
		_, _, err := runCLI(t, pw+"\n", "user", "add", "carla", "--db", db, "--password-stdin", "--enroll-at-login")
		switch {
		case want == "" && err != nil:
			t.Errorf("%q refused: %v", pw, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: %v, want a refusal naming %q", pw, err, want)
		}
		if want == "" {
			if _, _, err := runCLI(t, "", "user", "delete", "carla", "--db", db); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, _, err := runCLI(t, "abcdefghij\n", "user", "add", "dan", "--db", db, "--password-stdin", "--enroll-at-login", "--password-min-length", "12"); err == nil || !strings.Contains(err.Error(), "at least 12") {
		t.Errorf("--password-min-length 12: %v", err)
	}
	// --allow-weak keeps the minimum length (review B-F5: "ab" passed).
	if _, _, err := runCLI(t, "ab\n", "user", "add", "dan", "--db", db, "--password-stdin", "--enroll-at-login", "--allow-weak"); err == nil || !strings.Contains(err.Error(), "at least 8") {
		t.Fatalf("--allow-weak with a 2-character password: %v, want refused on length", err)
	}
	if _, _, err := runCLI(t, "iloveyou\n", "user", "add", "dan", "--db", db, "--password-stdin", "--enroll-at-login", "--allow-weak"); err != nil {
		t.Fatalf("--allow-weak: %v", err)
	}
	out, _, err := runCLI(t, "", "audit", "--db", db, "--user", "dan", "--json")
	if err != nil || !strings.Contains(out, "--allow-weak") {
		t.Fatalf("audit of --allow-weak: %v\n%s", err, out)
	}
}

// TestCLIUserLifecycleCommands: set-password (the rules apply, --must-change
// is recorded, the user is signed out), disable and enable, update and
// sessions, each with --json; every action is audited (issue 12).
func TestCLIUserLifecycleCommands(t *testing.T) {
	db := filepath.Join(t.TempDir(), "idp.db")
	if err := seal.GenerateKeyFile(db + ".key"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "amber lantern forty\n", "user", "add", "erin", "--db", db, "--password-stdin", "--email", "erin@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "iloveyou\n", "user", "set-password", "erin", "--db", db, "--password-stdin"); err == nil || !strings.Contains(err.Error(), "common and breached") {
		t.Fatalf("set-password with a blocklisted password: %v", err)
	}
	out, _, err := runCLI(t, "quiet harbour ninety\n", "user", "set-password", "erin", "--db", db, "--password-stdin", "--must-change", "--json")
	if err != nil || !strings.Contains(out, `"must_change":true`) {
		t.Fatalf("set-password --must-change: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "", "user", "show", "erin", "--db", db, "--json")
	if err != nil || !strings.Contains(out, `"must_change_password":true`) || strings.Contains(out, `"password_changed_at":""`) {
		t.Fatalf("show after set-password: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "", "user", "disable", "erin", "--db", db, "--json")
	if err != nil || !strings.Contains(out, `"disabled":true`) {
		t.Fatalf("disable: %v\n%s", err, out)
	}
	if out, _, err = runCLI(t, "", "user", "show", "erin", "--db", db); err != nil || !strings.Contains(out, "disabled:   since") {
		t.Fatalf("show a disabled user: %v\n%s", err, out)
	}
	if out, _, err = runCLI(t, "", "user", "enable", "erin", "--db", db); err != nil || !strings.Contains(out, "Enabled erin") {
		t.Fatalf("enable: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "", "user", "update", "erin", "--db", db, "--name", "Erin Example", "--email", "erin@example.org", "--email-verified=true", "--json")
	if err != nil || !strings.Contains(out, `"email":"erin@example.org"`) || !strings.Contains(out, `"email_verified":true`) || !strings.Contains(out, `"name":"Erin Example"`) {
		t.Fatalf("update: %v\n%s", err, out)
	}
	for _, bad := range [][]string{{"--email", "Erin <erin@example.org>"}, {"--email", "not an address"}, {"--name", "Erin\u202eelpmaxE"}} {
		if _, _, err := runCLI(t, "", append([]string{"user", "update", "erin", "--db", db}, bad...)...); err == nil {
			t.Errorf("update %v accepted", bad)
		}
	}
	if _, _, err := runCLI(t, "", "user", "update", "erin", "--db", db); err == nil || exitCode(err) != 2 {
		t.Errorf("update without a field: %v, want a usage error", err)
	}
	out, _, err = runCLI(t, "", "user", "sessions", "erin", "--db", db, "--json")
	if err != nil || !strings.Contains(out, `"sessions":[]`) || !strings.Contains(out, `"devices":[]`) {
		t.Fatalf("sessions: %v\n%s", err, out)
	}
	// Every lifecycle command answers in JSON (the issue's "all with
	// --json"; review C-F4).
	for _, c := range []struct{ cmd, want string }{
		{"revoke-sessions", `"ended":{`}, {"unlock", `"unlocked":true`}, {"recovery-codes", `"recovery_codes":[`}, {"reset-totp", `"totp_reset":true`},
	} {
		out, _, err := runCLI(t, "", "user", c.cmd, "erin", "--db", db, "--json")
		if err != nil || !strings.Contains(out, c.want) || strings.Contains(out, "unaudited") {
			t.Errorf("%s --json: %v\n%s", c.cmd, err, out)
		}
	}
	out, _, err = runCLI(t, "", "audit", "--db", db, "--user", "erin", "--json")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []string{"password_set", "user_disabled", "user_enabled", "user_updated"} {
		if !strings.Contains(out, `"event":"`+ev+`"`) {
			t.Errorf("audit lacks %s", ev)
		}
	}
}

// TestCLIPasswordMinLengthBounds: the CLI's --password-min-length has the
// bounds of serve's (8 to 64): a lower one would skip the rules without
// --allow-weak's audit (review of issue 12, F3); and a new e-mail address
// is not verified because the old one was (F4).
func TestCLIPasswordMinLengthBounds(t *testing.T) {
	db := filepath.Join(t.TempDir(), "idp.db")
	if err := seal.GenerateKeyFile(db + ".key"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"1", "7", "65"} {
		if _, _, err := runCLI(t, "Zq\n", "user", "add", "vera", "--db", db, "--password-stdin", "--enroll-at-login", "--password-min-length", n); err == nil || exitCode(err) != 2 {
			t.Errorf("--password-min-length %s: %v, want a usage error", n, err)
		}
	}
	if _, _, err := runCLI(t, "amber lantern forty\n", "user", "add", "vera", "--db", db, "--password-stdin", "--enroll-at-login",
		"--email", "vera@example.com", "--email-verified"); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "", "user", "update", "vera", "--db", db, "--email", "attacker@evil.example", "--json")
	if err != nil || !strings.Contains(out, `"email_verified":false`) {
		t.Fatalf("update --email of a verified address: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "", "user", "update", "vera", "--db", db, "--email", "vera@example.org", "--email-verified=true", "--json")
	if err != nil || !strings.Contains(out, `"email_verified":true`) {
		t.Fatalf("update --email --email-verified=true: %v\n%s", err, out)
	}
}

// TestCLIUnauditedActionFails: an operator action whose audit row cannot
// be written (here a trigger refuses every insert) still makes its change
// and prints its answer, but says it is unaudited and exits non-zero
// (review of issue 12, B-F2; docs/THREAT-MODEL.md rule 13).
func TestCLIUnauditedActionFails(t *testing.T) {
	db := filepath.Join(t.TempDir(), "idp.db")
	if err := seal.GenerateKeyFile(db + ".key"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "amber lantern forty\n", "user", "add", "fay", "--db", db, "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`CREATE TRIGGER no_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit refused'); END`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	out, _, err := runCLI(t, "", "user", "disable", "fay", "--db", db, "--json")
	if err == nil || !strings.Contains(err.Error(), "could not be written") || !strings.Contains(err.Error(), "user_disabled") {
		t.Fatalf("disable with the audit refused: %v, want the unaudited error", err)
	}
	// Exit status 3 (not 1: a script must not retry a change that was
	// made) and "unaudited" in the answer (review C-F4).
	if exitCode(err) != 3 || !strings.Contains(out, `"disabled":true`) || !strings.Contains(out, `"unaudited":"the change was made`) {
		t.Fatalf("the unaudited change's answer: exit %d, %q", exitCode(err), out)
	}
	if out, _, err = runCLI(t, "", "user", "show", "fay", "--db", db); err != nil || !strings.Contains(out, "disabled:   since") {
		t.Fatalf("the change was not made: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, "", "user", "show", "fay", "--db", db); err != nil {
		t.Fatalf("a read that audits nothing: %v", err)
	}
}

// TestCLIMail: `idp mail queue` lists what is not sent, `--failed` what
// the sender gave up, `--all` sent mails too; `idp mail retry` makes the
// given-up ones due again and is audited (issue 13, item 2).
func TestCLIMail(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "idp.db")
	st, err := openStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, id := range []string{"pending1", "gaveup1", "sent1"} {
		if err := st.QueueMail(ctx, storage.Mail{ID: id, Kind: "second_factor_failed", To: id + "@example.com", Subject: "s", Body: []byte("x"), CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.MailGaveUp(ctx, "gaveup1", "550 no such user", now); err != nil {
		t.Fatal(err)
	}
	if err := st.MailSent(ctx, "sent1", now); err != nil {
		t.Fatal(err)
	}
	st.Close()
	count := func(args ...string) (int, string) {
		out, _, err := runCLI(t, "", append([]string{"mail", "queue", "--db", db, "--json"}, args...)...)
		if err != nil {
			t.Fatalf("mail queue %v: %v", args, err)
		}
		return strings.Count(out, "\n"), out
	}
	if n, out := count(); n != 2 || !strings.Contains(out, `"state":"gave up"`) || !strings.Contains(out, `"last_error":"550 no such user"`) {
		t.Fatalf("mail queue: %d\n%s", n, out)
	}
	if n, _ := count("--failed"); n != 1 {
		t.Fatalf("mail queue --failed: %d, want 1", n)
	}
	if n, _ := count("--all"); n != 3 {
		t.Fatalf("mail queue --all: %d, want 3", n)
	}
	out, _, err := runCLI(t, "", "mail", "retry", "--db", db, "--json")
	if err != nil || !strings.Contains(out, `"retried":1`) {
		t.Fatalf("mail retry: %v\n%s", err, out)
	}
	if n, _ := count("--failed"); n != 0 {
		t.Fatalf("given-up mails after the retry: %d", n)
	}
	if out, _, _ := runCLI(t, "", "audit", "--db", db, "--json"); !strings.Contains(out, `"event":"mail_retry"`) {
		t.Fatalf("audit lacks mail_retry:\n%s", out)
	}
	if _, _, err := runCLI(t, "", "mail", "frobnicate", "--db", db); exitCode(err) != 2 {
		t.Fatalf("an unknown mail subcommand: %v", err)
	}
}
