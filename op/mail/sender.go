package mail

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/totp-idp/idp/storage"
)

// Defaults of the delivery schedule (README, "E-mail").
const (
	// DefaultGiveUpAfter is how long a mail is retried before the sender
	// gives up on it (an audit event says so; `idp mail retry` tries
	// again).
	DefaultGiveUpAfter = 24 * time.Hour
	// FirstRetry is the wait after the first failed attempt; it doubles
	// with each attempt up to MaxRetry.
	FirstRetry = 30 * time.Second
	MaxRetry   = 30 * time.Minute
	// lease is how long a claimed mail is the claimer's: longer than a
	// send may take, so no other replica claims it meanwhile; if the
	// claimer dies, the mail is due again when the lease runs out.
	lease = 2 * time.Minute
	batch = 20
	// sendTimeout bounds one send. A batch starts no send after
	// lease-2*sendTimeout, so every send of a batch ends while its lease
	// holds and no other replica has claimed the mail meanwhile (review
	// F-1: a stalled server made a batch outlast its lease, and two
	// replicas sent the rest twice).
	sendTimeout = 30 * time.Second
)

// Opener opens a sealed body (op/seal.Sealer).
type Opener interface {
	Open(aad string, sealed []byte) ([]byte, error)
}

// Auditor writes the audit trail (op/audit.Trail).
type Auditor interface {
	Event(ctx context.Context, typ, userID, username, clientID, detail string)
}

// Sender delivers the outbox.
type Sender struct {
	Store       storage.Store
	Sealer      Opener
	Transport   Transport
	From        string // the sender's address (--smtp-from)
	Domain      string // of the Message-IDs: the issuer's host
	Trail       Auditor
	Log         *slog.Logger
	Now         func() time.Time
	GiveUpAfter time.Duration
	// FirstRetry is the wait after a first failed attempt (zero:
	// FirstRetry; serve's --mail-retry).
	FirstRetry time.Duration
}

func (s *Sender) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// Backoff is the wait after the attempts-th failed attempt: first,
// doubling, at most MaxRetry.
func Backoff(attempts int, first time.Duration) time.Duration {
	d := min(first, MaxRetry)
	if d <= 0 {
		d = FirstRetry
	}
	for i := 1; i < attempts && d < MaxRetry; i++ {
		d *= 2
	}
	return min(d, MaxRetry)
}

// RunOnce claims the due mails and tries each once; it returns how many
// were sent. Errors of single mails are recorded on them, not returned.
func (s *Sender) RunOnce(ctx context.Context) (int, error) {
	now := s.now()
	mails, err := s.Store.ClaimMails(ctx, now, lease, batch)
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, m := range mails {
		if s.now().Sub(now) > lease-2*sendTimeout {
			// The rest wait for their lease to run out, then whichever
			// sender claims them first.
			break
		}
		sctx, cancel := context.WithTimeout(ctx, sendTimeout)
		err := s.deliver(sctx, m)
		cancel()
		if err != nil {
			s.failed(ctx, m, err)
			continue
		}
		sent++
	}
	return sent, nil
}

// deliver opens, builds and sends one mail and marks it sent. A crash
// between the send and the mark sends it again when its lease runs out,
// with the same Message-ID (README, "E-mail").
func (s *Sender) deliver(ctx context.Context, m storage.Mail) error {
	plain, err := s.Sealer.Open(AAD(m.ID), m.Body)
	if err != nil {
		return fmt.Errorf("open body: %w", err)
	}
	msg, err := decode(plain)
	if err != nil {
		return fmt.Errorf("decode body: %w", err)
	}
	built, err := Build(m.ID, s.From, s.Domain, msg, m.CreatedAt)
	if err != nil {
		return err
	}
	if err := s.Transport.Send(ctx, m.ID, built); err != nil {
		return err
	}
	if err := s.Store.MailSent(ctx, m.ID, s.now()); err != nil {
		// Sent but not marked: it goes again after its lease, with the
		// same Message-ID.
		s.log().WarnContext(ctx, "mail sent but not marked", "mail", m.ID, "err", err)
	}
	return nil
}

// failed records a failed attempt: retried after Backoff, or given up once
// the mail is older than GiveUpAfter (audited).
func (s *Sender) failed(ctx context.Context, m storage.Mail, cause error) {
	now := s.now()
	giveUp := s.GiveUpAfter
	if giveUp <= 0 {
		giveUp = DefaultGiveUpAfter
	}
	msg := cause.Error()
	if len(msg) > 500 {
		msg = msg[:500]
	}
	if now.Sub(m.CreatedAt) >= giveUp {
		if err := s.Store.MailGaveUp(ctx, m.ID, msg, now); err != nil {
			s.log().WarnContext(ctx, "mail give up", "mail", m.ID, "err", err)
			return
		}
		if s.Trail != nil {
			s.Trail.Event(ctx, "mail_gave_up", m.UserID, "", "", fmt.Sprintf("%s after %d attempts: %s", m.Kind, m.Attempts, msg))
		}
		return
	}
	if err := s.Store.MailRetryAt(ctx, m.ID, msg, now.Add(Backoff(m.Attempts, s.FirstRetry))); err != nil {
		s.log().WarnContext(ctx, "mail retry", "mail", m.ID, "err", err)
	}
}

func (s *Sender) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// Run delivers the outbox every interval until ctx ends.
func (s *Sender) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.RunOnce(ctx); err != nil && ctx.Err() == nil {
			s.log().WarnContext(ctx, "mail delivery", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
