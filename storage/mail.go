package storage

import (
	"context"
	"sync"
	"time"
)

// MailRetention is how long a sent or given-up mail stays in the outbox
// (GC): long enough for an operator to look at a delivery question, short
// enough not to keep what people were told forever.
const MailRetention = 30 * 24 * time.Hour

// Mail is one message of the outbox (issue 13): written in the same
// transaction as the event that causes it (WithMail), delivered by the
// sender with retries, and marked sent or given up.
type Mail struct {
	// ID is unique and stable across retries: the Message-ID's local part,
	// so a receiver can drop a copy sent twice after a crash between the
	// send and its mark.
	ID     string
	UserID string // "" for a mail to no account
	Kind   string // the notification ("password_changed", ...)
	To     string
	// Subject is kept readable for the operator's queue listing; it never
	// holds a secret. Body is the message, sealed by the caller (it may
	// hold a link's token), opaque to the store.
	Subject   string
	Body      []byte
	CreatedAt time.Time
	// OncePer, when set, writes the mail only if no mail of its Kind to
	// its UserID was created within OncePer before CreatedAt (at most one
	// "wrong code after your password" mail an hour), decided in the same
	// transaction as the insert.
	OncePer time.Duration

	// Delivery state.
	Attempts      int
	NextAttemptAt time.Time
	SentAt        time.Time // zero while unsent
	FailedAt      time.Time // the sender gave up
	LastError     string
}

// MailFilter selects outbox rows for the operator (idp mail queue).
type MailFilter struct {
	Pending bool // unsent and not given up
	Failed  bool // given up
	Limit   int  // 0: 100
}

// mailKey is the context key of mails to write with a transaction.
type mailKey struct{}

// pendingMails are mails a caller asked to be written in the transaction
// of the next write made with its context.
type pendingMails struct {
	mu    sync.Mutex
	mails []Mail
}

// WithMail returns ctx carrying mails: the backend writes them in the
// transaction of the write it is given ctx for, and only if that
// transaction commits, so an event and its notification stand or fall
// together (issue 13). Each mail's ID makes a second write of it (ctx
// passed on to another write, a retried transaction) a no-op.
func WithMail(ctx context.Context, mails ...Mail) context.Context {
	if len(mails) == 0 {
		return ctx
	}
	return context.WithValue(ctx, mailKey{}, &pendingMails{mails: mails})
}

// MailsOf returns the mails ctx carries for its write (for backends).
func MailsOf(ctx context.Context) []Mail {
	p, _ := ctx.Value(mailKey{}).(*pendingMails)
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Mail(nil), p.mails...)
}
