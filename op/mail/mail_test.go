package mail

import (
	"bytes"
	"context"
	"errors"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
	"github.com/totp-idp/idp/storage/sqlite"
)

// TestBuildAddsNoHeader: CR/LF and encoded words in what reaches the
// headers (a name in the subject, a stored address) never add a header or
// a recipient (issue 13, header injection).
func TestBuildAddsNoHeader(t *testing.T) {
	for _, to := range []string{"a@example.com\r\nBcc: evil@example.net", "a@example.com, evil@example.net", "Ann <a@example.com>",
		"a@example.com\nBcc:evil@example.net", " a@example.com", "=?utf-8?q?a=0D=0ABcc:_evil@example.net?=@example.com"} {
		if _, err := Build("id1", "idp@example.com", "example.com", Message{To: to, Subject: "s", Text: "t"}, time.Now()); err == nil {
			t.Errorf("recipient %q accepted", to)
		}
	}
	msg, err := Build("id1", "idp@example.com", "example.com", Message{To: "a@example.com",
		Subject: "Hello Ann\r\nBcc: evil@example.net\r\n\r\nbody", Text: "hi\r\nBcc: evil@example.net"}, time.Unix(1_900_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := msg.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	parsed, err := mail.ReadMessage(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Header.Get("Bcc") != "" || parsed.Header.Get("Cc") != "" {
		t.Fatalf("an injected recipient: %v", parsed.Header)
	}
	if got := parsed.Header.Get("To"); got != "<a@example.com>" && got != "a@example.com" {
		t.Fatalf("To: %q", got)
	}
	dec := new(mime.WordDecoder)
	subj, err := dec.DecodeHeader(parsed.Header.Get("Subject"))
	if err != nil || strings.ContainsAny(subj, "\r\n") || !strings.HasPrefix(subj, "Hello Ann") {
		t.Fatalf("Subject %q (%v)", subj, err)
	}
	if got := parsed.Header.Get("Message-Id"); got != "<id1@example.com>" {
		t.Fatalf("Message-ID %q, want the stable <id1@example.com>", got)
	}
}

type fakeTransport struct {
	mu       sync.Mutex
	failures int // the next sends that fail
	sent     []string
}

func (f *fakeTransport) Send(_ context.Context, id string, _ *gomail.Msg) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures > 0 {
		f.failures--
		return errors.New("dial tcp 127.0.0.1:2525: connection refused")
	}
	f.sent = append(f.sent, id)
	return nil
}

type fakeTrail struct{ events []string }

func (f *fakeTrail) Event(_ context.Context, typ, _, _, _, detail string) {
	f.events = append(f.events, typ+": "+detail)
}

func newSender(t *testing.T, tr Transport, clock *time.Time) (*Sender, *sqlite.Store, *seal.Sealer, *fakeTrail) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "idp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, err := seal.New(make([]byte, 32), "")
	if err != nil {
		t.Fatal(err)
	}
	trail := &fakeTrail{}
	return &Sender{Store: st, Sealer: sealer, Transport: tr, From: "idp@example.com", Domain: "example.com", Trail: trail,
		Now: func() time.Time { return *clock }}, st, sealer, trail
}

// TestSenderRetriesThenDeliversOnce: a mail server that is down gets the
// mail again after 30 s, then 60 s (backoff), and once it answers the mail
// is delivered once and never again.
func TestSenderRetriesThenDeliversOnce(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_900_000_000, 0).UTC()
	tr := &fakeTransport{failures: 2}
	s, st, sealer, _ := newSender(t, tr, &now)
	m, err := Outbox(ctx, sealer, "u1", "password_changed", Message{To: "a@example.com", Subject: "Your password was changed", Text: "t"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.QueueMail(ctx, m); err != nil {
		t.Fatal(err)
	}
	step := func(d time.Duration) int {
		now = now.Add(d)
		n, err := s.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	got := []int{step(0), step(29 * time.Second), step(time.Second), step(59 * time.Second), step(time.Second), step(time.Hour)}
	if want := []int{0, 0, 0, 0, 1, 0}; !equal(got, want) {
		t.Fatalf("sent per run %v, want %v (fail, wait 30 s, fail, wait 60 s, send, nothing more)", got, want)
	}
	if len(tr.sent) != 1 || tr.sent[0] != m.ID {
		t.Fatalf("delivered %v, want the mail once", tr.sent)
	}
	ms, _ := st.Mails(ctx, storage.MailFilter{})
	if len(ms) != 1 || ms[0].SentAt.IsZero() || ms[0].Attempts != 3 {
		t.Fatalf("the outbox row: %+v", ms)
	}
}

// TestSenderGivesUp: a mail still failing after GiveUpAfter is given up,
// with an audit event, and is not tried again until the operator's retry.
func TestSenderGivesUp(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_900_000_000, 0).UTC()
	tr := &fakeTransport{failures: 1000}
	s, st, sealer, trail := newSender(t, tr, &now)
	s.GiveUpAfter = time.Hour
	m, err := Outbox(ctx, sealer, "u1", "totp_locked", Message{To: "a@example.com", Subject: "s", Text: "t"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.QueueMail(ctx, m); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := s.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		now = now.Add(10 * time.Minute)
	}
	failed, _ := st.Mails(ctx, storage.MailFilter{Failed: true})
	if len(failed) != 1 || !strings.Contains(failed[0].LastError, "connection refused") {
		t.Fatalf("given up: %+v", failed)
	}
	if len(trail.events) != 1 || !strings.HasPrefix(trail.events[0], "mail_gave_up: totp_locked") {
		t.Fatalf("audit: %v", trail.events)
	}
	tries := failed[0].Attempts
	if tries < 3 || tries > 8 {
		t.Fatalf("attempts before giving up after an hour: %d", tries)
	}
	if n, _ := st.RetryFailedMails(ctx, now); n != 1 {
		t.Fatal("the operator's retry")
	}
	tr.failures = 0
	if n, _ := s.RunOnce(ctx); n != 1 {
		t.Fatal("not sent after the operator's retry")
	}
}

// TestDirWritesOnce: --dev's transport writes <id>.eml once; a second
// send of the same id writes nothing new.
func TestDirWritesOnce(t *testing.T) {
	dir := t.TempDir()
	msg, err := Build("abc", "idp@example.com", "example.com", Message{To: "a@example.com", Subject: "s", Text: "first"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := (Dir{Path: dir}).Send(context.Background(), "abc", msg); err != nil {
		t.Fatal(err)
	}
	again, _ := Build("abc", "idp@example.com", "example.com", Message{To: "a@example.com", Subject: "s", Text: "second"}, time.Now())
	if err := (Dir{Path: dir}).Send(context.Background(), "abc", again); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "abc.eml"))
	if err != nil || !strings.Contains(string(b), "first") || strings.Contains(string(b), "second") {
		t.Fatalf("abc.eml: %v\n%s", err, b)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".mail-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// TestParseSMTP: STARTTLS is required unless ?tls=none, which is for a
// loopback host only; no password in the URL.
func TestParseSMTP(t *testing.T) {
	for raw, ok := range map[string]bool{
		"smtp://mail.example.com":             true,
		"smtp://mail.example.com:2525":        true,
		"smtps://mail.example.com":            true,
		"smtp://127.0.0.1:2525?tls=none":      true,
		"smtp://localhost:2525?tls=none":      true,
		"smtp://mail.example.com?tls=none":    false,
		"smtp://user:secret@mail.example.com": false,
		"smtps://mail.example.com?tls=none":   false,
		"http://mail.example.com":             false,
		"smtp://mail.example.com?tls=maybe":   false,
		"smtp://mail.example.com?x=1":         false,
		"smtp://mail.example.com:99999":       false,
		"smtp://user@mail.example.com":        false, // a user without a password file
		"smtp://mail.example.com/path":        false,
	} {
		_, err := ParseSMTP(raw, "")
		if (err == nil) != ok {
			t.Errorf("%s: %v, want ok=%t", raw, err, ok)
		}
	}
	if _, err := ParseSMTP("smtp://user@mail.example.com", "pw"); err != nil {
		t.Errorf("a user with a password: %v", err)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// slowTransport delivers each mail after advancing the clock by took.
type slowTransport struct {
	mu    sync.Mutex
	clock *time.Time
	took  time.Duration
	sent  map[string]int
}

func (s *slowTransport) Send(_ context.Context, id string, _ *gomail.Msg) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	*s.clock = s.clock.Add(s.took)
	s.sent[id]++
	return nil
}

// TestSlowServerSendsOnce: with a mail server taking 7 s a mail, a batch
// stops starting sends before its lease runs out, so another sender
// claiming the rest after the lease sends each mail once (review of
// issue 13, F-1: three of twenty went twice).
func TestSlowServerSendsOnce(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_900_000_000, 0).UTC()
	tr := &slowTransport{clock: &now, took: 7 * time.Second, sent: map[string]int{}}
	a, st, sealer, _ := newSender(t, tr, &now)
	b := *a
	for i := 0; i < batch; i++ {
		m, err := Outbox(ctx, sealer, "u1", "k", Message{To: "a@example.com", Subject: "s", Text: "t"}, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.QueueMail(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	start := now
	first, err := a.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if now.Sub(start) > lease {
		t.Fatalf("the batch took %s of a %s lease", now.Sub(start), lease)
	}
	// The other replica, once the lease has run out, takes the rest.
	now = start.Add(lease + time.Second)
	for round := 0; round < 5; round++ {
		if _, err := b.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		now = now.Add(lease + time.Second)
	}
	if first == 0 || first == batch {
		t.Fatalf("the first batch sent %d of %d: the test needs it cut short", first, batch)
	}
	if len(tr.sent) != batch {
		t.Fatalf("%d distinct mails sent, want %d", len(tr.sent), batch)
	}
	for id, n := range tr.sent {
		if n != 1 {
			t.Errorf("mail %s sent %d times", id, n)
		}
	}
}

// TestAddress: one plain mailbox on a DNS name, nothing else (review H,
// F1 and F3: "%!" in a domain, address literals, local hosts and Unicode
// spellings of a domain were accepted).
func TestAddress(t *testing.T) {
	for _, ok := range []string{"ann@example.com", "ann.lee+tag@mail.example.co.uk", "a_b-c@xn--bcher-kva.example", "o'neil@example.org", "x@a-b.example"} {
		if _, err := Address(ok); err != nil {
			t.Errorf("Address(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ann", "@example.com", "ann@", "ann@b", "ann@[127.0.0.1]", "ann@127.0.0.1", "x@a%!.example",
		"user%host@relay.example", "a!b@example.com", `"a b"@example.com`, `"ann"@example.com`, "ann@bücher.example", "änn@example.com",
		"ann..lee@example.com", ".ann@example.com", "ann@-x.example", "ann@x-.example", "ann@example..com", "Ann <ann@example.com>",
		"ann@example.com, b@example.com", "ann@example.com\r\nBcc: x@example.net", "ann@exa mple.com", strings.Repeat("a", 65) + "@example.com",
		"ann@" + strings.Repeat("a", 64) + ".example", "root@127.0.0.0x1", "root@0x7f.0x1", "root@0177.0.0.0x1", "root@10.0.0.0x1",
		"root@0x7f.0xa", "a@example.1com"} {
		if _, err := Address(bad); err == nil {
			t.Errorf("Address(%q) accepted", bad)
		}
	}
}
