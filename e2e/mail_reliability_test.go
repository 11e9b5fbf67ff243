package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// mrQueue is `idp mail queue --json` (everything not sent).
func mrQueue(t *testing.T, db string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(CLI(t, db, "", "mail", "queue", "--json")), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("mail queue line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// mrWrongCode signs u in to the second step and enters a wrong code: the
// "wrong code after your password" notice.
func mrWrongCode(t *testing.T, s *Server, c Client, u User) {
	t.Helper()
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	acPasswordPage(t, f, u.Name, u.Password)
	if p := f.TOTP("000000"); p.Status != http.StatusUnauthorized {
		t.Fatalf("wrong code: %d", p.Status)
	}
}

// TestMailSMTPDown, through the real binary and the SMTP sink: with the
// mail server down (its port refuses connections) a sign-in still
// completes and its notices wait in the outbox with the error; once the
// server is back, each is delivered exactly once (issue 13, reliability).
// How fast a sign-in is meanwhile is `make bench`'s (README,
// Performance), not a timed assertion here.
func TestMailSMTPDown(t *testing.T) {
	sink := StartSink(t)
	sink.Down()
	s := StartServer(t, "--smtp-url", sink.URL(), "--smtp-from", "idp@example.com", "--mail-interval", "100ms", "--mail-retry", "1s")
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	u := AddUser(t, s.DB, "sol", "correct horse battery", "--email-verified")

	mrWrongCode(t, s, c, u)
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	if _, err := rp.Exchange(f, f.Login(u)); err != nil {
		t.Fatalf("a sign-in while the mail server is down: %v", err)
	}
	// Both notices wait, with the delivery error recorded.
	deadline := time.Now().Add(5 * time.Second)
	var q []map[string]any
	for time.Now().Before(deadline) {
		if q = mrQueue(t, s.DB); len(q) == 2 && q[0]["last_error"] != "" && q[1]["last_error"] != "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(q) != 2 || q[0]["state"] != "pending" || q[0]["last_error"] == "" || q[1]["last_error"] == "" {
		t.Fatalf("the outbox while the mail server is down: %v", q)
	}
	if n := len(sink.Mails()); n != 0 {
		t.Fatalf("%d mails delivered while down", n)
	}
	sink.Up()
	if got := sink.Wait(2, 15*time.Second); len(got) < 2 {
		t.Fatalf("mails after the server came back: %d, want 2", len(got))
	}
	time.Sleep(1500 * time.Millisecond) // more delivery rounds and a retry period: still two
	got := sink.Mails()
	if len(got) != 2 {
		t.Fatalf("mails after the server came back: %d, want 2", len(got))
	}
	ids := map[string]bool{}
	for _, m := range got {
		ids[m.Msg.Header.Get("Message-Id")] = true
	}
	if len(ids) != 2 || len(sink.To("sol@example.com", "someone entered your password")) != 1 || len(sink.To("sol@example.com", "a sign-in from a new browser")) != 1 {
		t.Fatalf("the delivered mails: %v", ids)
	}
	if q := mrQueue(t, s.DB); len(q) != 0 {
		t.Fatalf("the outbox after delivery: %v", q)
	}
}

// TestMailKilledBeforeSend, through the real binary: the process is
// killed (SIGKILL) after the event wrote its notice and before the sender
// ran again; the notice is in the outbox, and the next process delivers
// it, once.
func TestMailKilledBeforeSend(t *testing.T) {
	sink := StartSink(t)
	// The sender runs at start and then only hourly: the notice written
	// after the start waits.
	s := StartServer(t, "--smtp-url", sink.URL(), "--smtp-from", "idp@example.com", "--mail-interval", "1h")
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "kit", "correct horse battery", "--email-verified")
	mrWrongCode(t, s, c, u)
	s.Kill()
	if q := mrQueue(t, s.DB); len(q) != 1 || q[0]["kind"] != "second_factor_failed" || q[0]["attempts"] != float64(0) {
		t.Fatalf("the outbox after kill -9: %v", q)
	}
	if n := len(sink.Mails()); n != 0 {
		t.Fatalf("%d mails before the restart", n)
	}
	s.args = []string{"--smtp-url", sink.URL(), "--smtp-from", "idp@example.com", "--mail-interval", "100ms"}
	s.Restart()
	sink.Wait(1, 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	if got := sink.To("kit@example.com", "someone entered your password"); len(got) != 1 || len(sink.Mails()) != 1 {
		t.Fatalf("after the restart: %d mails, want the one notice", len(sink.Mails()))
	}
}

// TestMailHeaderInjection, through the real binary and the SMTP sink: CR,
// LF and encoded words in the fields a notice is made of (the display
// name, the address, the browser's User-Agent) never add a header or a
// recipient: the operator's commands refuse control characters in names
// and anything but one plain address, and what is stored reaches only the
// body.
func TestMailHeaderInjection(t *testing.T) {
	s, sink := rsMailServer(t)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "ivy", "correct horse battery")
	for _, args := range [][]string{
		{"--name", "Ivy\r\nBcc: evil@example.net"},
		{"--email", "ivy@example.com\r\nBcc: evil@example.net"},
		{"--email", "ivy@example.com, evil@example.net"},
		{"--email", "Ivy <ivy@example.com>"},
		{"--email", "=?utf-8?q?ivy=0D=0ABcc:_evil@example.net?=@example.com"},
	} {
		if _, _, err := CLIResult(s.DB, "", append([]string{"user", "update", u.Name}, args...)...); err == nil {
			t.Errorf("user update %q accepted", args)
		}
	}
	// An encoded word as the display name is kept, as text.
	CLI(t, s.DB, "", "user", "update", u.Name, "--name", "=?utf-8?q?Ivy=0D=0ABcc:_evil@example.net?=", "--email-verified=true")
	b := NewBrowser(t, "")
	// (A CR or LF cannot be sent in a header at all: net/http refuses it.)
	b.UA = "Mozilla/5.0 =?utf-8?q?=0D=0ABcc:_evil@example.net?= Bcc: evil@example.net"
	f := b.StartFlow(s, c, AuthParams{})
	f.Login(u)
	mrWrongCode(t, s, c, u)
	got := sink.Wait(2, 10*time.Second)
	if len(got) != 2 {
		t.Fatalf("%d mails, want the new-browser and the wrong-code notices", len(got))
	}
	for _, m := range got {
		if len(m.To) != 1 || m.To[0] != "ivy@example.com" {
			t.Errorf("%q: envelope recipients %v", m.Subject(), m.To)
		}
		for _, h := range []string{"Bcc", "Cc"} {
			if v := m.Msg.Header.Get(h); v != "" {
				t.Errorf("%q: a %s header %q", m.Subject(), h, v)
			}
		}
		if to := m.Msg.Header["To"]; len(to) != 1 || !strings.Contains(to[0], "ivy@example.com") || strings.Contains(to[0], "evil") {
			t.Errorf("%q: To %v", m.Subject(), to)
		}
		if strings.Contains(m.Subject(), "evil") || strings.ContainsAny(m.Subject(), "\r\n") {
			t.Errorf("subject %q", m.Subject())
		}
		headers := string(m.Raw[:strings.Index(string(m.Raw), "\r\n\r\n")])
		if strings.Contains(headers, "evil") {
			t.Errorf("%q: the headers name evil:\n%s", m.Subject(), headers)
		}
	}
	if !strings.Contains(sink.To("ivy@example.com", "new browser")[0].Part("text/plain"), "Mozilla/5.0") {
		t.Error("the new-browser notice does not name the browser")
	}
}
