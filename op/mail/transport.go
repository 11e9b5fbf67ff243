package mail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Transport delivers one built message. An error means it may not have
// been delivered; the sender retries it later.
type Transport interface {
	Send(ctx context.Context, id string, msg *gomail.Msg) error
}

// Dir is the --dev transport: each message is written as <id>.eml in the
// directory, so a newcomer sees the mails without a mail server. A file
// already there is a message already delivered (a retry after a crash
// between the write and its mark writes nothing new).
type Dir struct{ Path string }

// Send writes the message to its file, through a temporary file and a
// rename, so a reader never sees half a message.
func (d Dir) Send(_ context.Context, id string, msg *gomail.Msg) error {
	final := filepath.Join(d.Path, id+".eml")
	if _, err := os.Stat(final); err == nil {
		return nil
	}
	var buf bytes.Buffer
	if _, err := msg.WriteTo(&buf); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(d.Path, ".mail-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), final)
}

// SMTP is the mail server of --smtp-url: smtp://host[:port] with STARTTLS
// required, smtp://host?tls=none (a loopback host only), or
// smtps://host[:port] (TLS from the start). The password (from
// --smtp-password-file) authenticates the URL's user.
type SMTP struct {
	host     string
	port     int
	policy   gomail.TLSPolicy
	ssl      bool
	user     string
	password string
	timeout  time.Duration
}

// ParseSMTP reads an --smtp-url. Plain text is allowed only to a loopback
// host and only when asked for (?tls=none): a password or a reset link
// must never cross a network unencrypted.
func ParseSMTP(raw, password string) (*SMTP, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Path != "" && u.Path != "/" || u.Fragment != "" {
		return nil, fmt.Errorf("--smtp-url: want smtp://host[:port] or smtps://host[:port]")
	}
	s := &SMTP{host: u.Hostname(), timeout: 15 * time.Second, password: password}
	if u.User != nil {
		s.user = u.User.Username()
		if _, set := u.User.Password(); set {
			return nil, errors.New("--smtp-url: put the password in --smtp-password-file, not in the URL")
		}
	}
	q := u.Query()
	for k := range q {
		if k != "tls" {
			return nil, fmt.Errorf("--smtp-url: unknown parameter %q", k)
		}
	}
	switch u.Scheme {
	case "smtp":
		s.port, s.policy = 587, gomail.TLSMandatory
		switch q.Get("tls") {
		case "":
		case "none":
			ip := net.ParseIP(s.host)
			if s.host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				return nil, errors.New("--smtp-url: ?tls=none is for a loopback host only")
			}
			s.policy = gomail.NoTLS
		default:
			return nil, fmt.Errorf("--smtp-url: tls=%q: only tls=none is known", q.Get("tls"))
		}
	case "smtps":
		if q.Has("tls") {
			return nil, errors.New("--smtp-url: smtps:// is always TLS")
		}
		s.port, s.ssl = 465, true
	default:
		return nil, fmt.Errorf("--smtp-url: scheme %q: want smtp or smtps", u.Scheme)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("--smtp-url: port %q", p)
		}
		s.port = n
	}
	if s.user != "" && s.password == "" {
		return nil, errors.New("--smtp-url names a user: give its password in --smtp-password-file")
	}
	return s, nil
}

// Send dials the server, delivers the message and hangs up.
func (s *SMTP) Send(ctx context.Context, _ string, msg *gomail.Msg) error {
	opts := []gomail.Option{gomail.WithPort(s.port), gomail.WithTimeout(s.timeout)}
	if s.ssl {
		opts = append(opts, gomail.WithSSL())
	} else {
		opts = append(opts, gomail.WithTLSPolicy(s.policy))
	}
	if s.user != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover), gomail.WithUsername(s.user), gomail.WithPassword(s.password))
	}
	c, err := gomail.NewClient(s.host, opts...)
	if err != nil {
		return err
	}
	return c.DialAndSendWithContext(ctx, msg)
}
