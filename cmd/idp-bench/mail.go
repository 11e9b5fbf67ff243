package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	smtp "github.com/emersion/go-smtp"
	_ "modernc.org/sqlite"
)

// mailReport is the mail section: the logins of the main section again,
// with notifications on and a mail server that takes DelayS per mail.
type mailReport struct {
	DelayS  float64       `json:"smtp_seconds_per_mail"`
	Control []*loginLevel `json:"logins_without_mail,omitempty"`
	Logins  []*loginLevel `json:"logins,omitempty"`
	Queued  int           `json:"notices_queued"`
	Sent    int           `json:"notices_sent"`
}

// mailDelay is how long the bench's mail server takes per message.
const mailDelay = 2 * time.Second

// slowSMTP accepts every message after mailDelay.
type slowSMTP struct{ n atomic.Int64 }

type slowSession struct{ s *slowSMTP }

func (x slowSession) Reset()                               {}
func (x slowSession) Logout() error                        { return nil }
func (x slowSession) Mail(string, *smtp.MailOptions) error { return nil }
func (x slowSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (x slowSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	time.Sleep(mailDelay)
	x.s.n.Add(1)
	return nil
}

// mailSection runs the login levels again on the main database, every
// account with a verified address, against a server with notifications
// on and a slow mail server on 127.0.0.1: the sign-in figures must not
// move (issue 13: nothing about mail slows a sign-in).
func (b *bench) mailSection(ctx context.Context) error {
	if b.mainDB == "" {
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sink := &slowSMTP{}
	srvSMTP := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return slowSession{sink}, nil }))
	srvSMTP.Domain = "bench.test"
	go func() { _ = srvSMTP.Serve(l) }()
	defer srvSMTP.Close()
	b.rep.Mail.DelayS = mailDelay.Seconds()

	conn, err := sql.Open("sqlite", "file:"+b.mainDB)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `UPDATE users SET email = username || '@bench.example', email_verified = 1`); err != nil {
		return fmt.Errorf("mail section: verify addresses: %w", err)
	}
	// The control first, then the same levels with mail: on the same
	// database, each from a fresh TOTP step (the database only grows, so
	// the mail pass runs on the larger one).
	args := []string{"--password-max-failures", "100", "--password-hard-limit", "100"}
	if b.rep.Mail.Control, err = b.mailPass(ctx, "notifications off", args); err != nil {
		return err
	}
	b.logf("mail server %s (%s per mail)", l.Addr(), mailDelay)
	args = append(args, "--smtp-url", "smtp://"+l.Addr().String()+"?tls=none", "--smtp-from", "bench@bench.example", "--mail-interval", "1s")
	if b.rep.Mail.Logins, err = b.mailPass(ctx, "notifications on", args); err != nil {
		return err
	}
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox`).Scan(&b.rep.Mail.Queued); err != nil {
		return err
	}
	b.rep.Mail.Sent = int(sink.n.Load())
	return nil
}

// mailPass starts idp serve on the main database with args and runs the
// login levels, from the next TOTP step.
func (b *bench) mailPass(ctx context.Context, what string, args []string) ([]*loginLevel, error) {
	b.logf("starting idp serve, %s", what)
	srv, err := startServer(b.bin, b.mainDB, args...)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	r, err := newRP(ctx, srv.issuer, clientID, b.secret, redirectURI)
	if err != nil {
		return nil, err
	}
	// Each user may log in once a TOTP step (RFC 6238 §5.2): the levels
	// start with a fresh one.
	if err := b.nextStep(ctx); err != nil {
		return nil, err
	}
	for range warmupLogins {
		if err := b.loginOnce(r, b.pool, "openid profile email", nil); err != nil {
			return nil, fmt.Errorf("%s: warm-up: %w", what, err)
		}
	}
	var out []*loginLevel
	for _, c := range levels {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b.logf("logins at concurrency %d, %s", c, what)
		res, err := runLevel(ctx, srv, b.metrics, c, b.set.Login, func(_ int, steps *[numSteps]time.Duration) error {
			return b.loginOnce(r, b.pool, "openid profile email", steps)
		})
		if err != nil {
			return nil, err
		}
		lv := b.rep.levelOf(res)
		out = append(out, lv)
		b.logf("  %d logins in %.1f s = %.1f/s (%s)", res.N, res.Elapsed.Seconds(), lv.PerS, what)
		if res.Failed > 0 {
			return nil, fmt.Errorf("logins (%s) at concurrency %d: %d failed: %s", what, c, res.Failed, strings.Join(res.Errors, "; "))
		}
	}
	return out, nil
}

// nextStep waits for the next RFC 6238 time step, when every user of the
// pool may log in again.
func (b *bench) nextStep(ctx context.Context) error {
	wait := time.Duration(30-time.Now().Unix()%30)*time.Second + 100*time.Millisecond
	b.logf("waiting %s for the next TOTP step", wait.Round(time.Second))
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(wait):
		return nil
	}
}
