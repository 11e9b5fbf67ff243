package e2e

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"
)

// Sink is the e2e harness's in-process SMTP server on 127.0.0.1: what the
// provider's sender delivers lands in Mails, one per DATA, with the
// envelope as given. Down closes its port (connections are refused) and
// Up opens it again on the same address; Delay slows every DATA.
type Sink struct {
	t    testing.TB
	addr string

	mu    sync.Mutex
	srv   *smtp.Server
	l     net.Listener
	mails []SinkMail
	delay time.Duration
}

// SinkMail is one delivered message.
type SinkMail struct {
	From string
	To   []string
	Raw  []byte
	Msg  *mail.Message
	Body string // the raw body after the headers (all parts)
}

// Subject is the decoded Subject header.
func (m SinkMail) Subject() string {
	s, _ := new(mime.WordDecoder).DecodeHeader(m.Msg.Header.Get("Subject"))
	return s
}

// StartSink listens on a free loopback port until the test ends.
func StartSink(t testing.TB) *Sink {
	t.Helper()
	s := &Sink{t: t}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	s.serve(l)
	t.Cleanup(s.Down)
	return s
}

// URL is the provider's --smtp-url for the sink (plain text on loopback).
func (s *Sink) URL() string { return "smtp://" + s.addr + "?tls=none" }

func (s *Sink) serve(l net.Listener) {
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{sink: s}, nil }))
	srv.Domain = "sink.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.MaxMessageBytes = 1 << 20
	s.mu.Lock()
	s.srv, s.l = srv, l
	s.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

// Down stops the sink: its port refuses connections.
func (s *Sink) Down() {
	s.mu.Lock()
	srv, l := s.srv, s.l
	s.srv, s.l = nil, nil
	s.mu.Unlock()
	if srv != nil {
		// The listener is closed here too: Serve may not have taken it
		// yet, and the server closes only the listeners it serves.
		_ = l.Close()
		_ = srv.Close()
	}
}

// Up listens again on the sink's address.
func (s *Sink) Up() {
	s.t.Helper()
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may take a moment to be free again
		if l, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("sink up again on %s: %v", s.addr, err)
	}
	s.serve(l)
}

// SetDelay makes every DATA take d.
func (s *Sink) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// Mails are the messages delivered so far.
func (s *Sink) Mails() []SinkMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkMail(nil), s.mails...)
}

// Wait returns the delivered mails once there are at least n, or when
// within has passed (bounded).
func (s *Sink) Wait(n int, within time.Duration) []SinkMail {
	deadline := time.Now().Add(within)
	for {
		m := s.Mails()
		if len(m) >= n || time.Now().After(deadline) {
			return m
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// To are the mails delivered to addr whose subject contains subject.
func (s *Sink) To(addr, subject string) []SinkMail {
	var out []SinkMail
	for _, m := range s.Mails() {
		for _, r := range m.To {
			if strings.EqualFold(r, addr) && strings.Contains(m.Subject(), subject) {
				out = append(out, m)
			}
		}
	}
	return out
}

// WaitTo waits (bounded) for n mails to addr with subject.
func (s *Sink) WaitTo(addr, subject string, n int, within time.Duration) []SinkMail {
	deadline := time.Now().Add(within)
	for {
		m := s.To(addr, subject)
		if len(m) >= n || time.Now().After(deadline) {
			return m
		}
		time.Sleep(25 * time.Millisecond)
	}
}

type sinkSession struct {
	sink *Sink
	from string
	to   []string
}

func (x *sinkSession) Reset()        { x.from, x.to = "", nil }
func (x *sinkSession) Logout() error { return nil }
func (x *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	x.from = from
	return nil
}
func (x *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}
func (x *sinkSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.sink.mu.Lock()
	delay := x.sink.delay
	x.sink.mu.Unlock()
	time.Sleep(delay)
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return &smtp.SMTPError{Code: 554, Message: "unreadable message: " + err.Error()}
	}
	body, _ := io.ReadAll(msg.Body)
	msg, _ = mail.ReadMessage(bytes.NewReader(raw))
	x.sink.mu.Lock()
	x.sink.mails = append(x.sink.mails, SinkMail{From: x.from, To: append([]string(nil), x.to...), Raw: raw, Msg: msg, Body: string(body)})
	x.sink.mu.Unlock()
	return nil
}

// Part is the decoded body of the mail's first part of content type ct
// ("text/plain", "text/html"), "" when it has none.
func (m SinkMail) Part(ct string) string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
	if err != nil {
		return ""
	}
	return findPart(textproto.MIMEHeader(msg.Header), msg.Body, ct, 0)
}

func findPart(h textproto.MIMEHeader, body io.Reader, want string, depth int) string {
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || depth > 5 {
		return ""
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return ""
			}
			if s := findPart(p.Header, p, want, depth+1); s != "" {
				return s
			}
		}
	}
	if mt != want {
		return ""
	}
	var r io.Reader = body
	switch strings.ToLower(h.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, _ := io.ReadAll(r)
	return string(b)
}
