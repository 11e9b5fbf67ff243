package mail

import (
	"context"
	"log/slog"
	"time"

	"github.com/totp-idp/idp/storage"
)

// Notification kinds, each with its audit event (issue 13, item 4).
const (
	// SecondFactorFailed: a wrong second factor right after the correct
	// password, so someone knows the password; at most one an hour.
	SecondFactorFailed = "second_factor_failed"
)

// oncePer are the kinds sent at most once per period to one account.
var oncePer = map[string]time.Duration{SecondFactorFailed: time.Hour}

// Notifier composes notifications from the message catalogue and hands
// them to the store with the event's write (storage.WithMail). A nil
// Notifier (mail off) sends nothing. Nothing it does fails the caller: a
// notification that cannot be made is logged and dropped, so mail never
// breaks or slows a sign-in beyond one indexed read.
type Notifier struct {
	Store   storage.Store
	Sealer  Sealer
	Text    func(key string, args ...any) string // the catalogue (pages.Pages.Text)
	Product string
	Log     *slog.Logger
	Now     func() time.Time
}

// With returns ctx carrying the notification kind for userID, to be
// written with the next write made with it (the event's audit row), or
// ctx itself when there is nothing to send: mail off, no such user, or no
// verified address (a security notice goes only where the user proved
// they read mail; README, "E-mail").
func (n *Notifier) With(ctx context.Context, userID, kind string) context.Context {
	if n == nil || userID == "" {
		return ctx
	}
	u, err := n.Store.UserByID(ctx, userID)
	if err != nil || u.Email == "" || !u.EmailVerified {
		return ctx
	}
	now := time.Now().UTC()
	if n.Now != nil {
		now = n.Now().UTC()
	}
	name := u.Name
	if name == "" {
		name = u.Username
	}
	msg := Message{
		To:      u.Email,
		Subject: n.Text("mail."+kind+".subject", n.Product),
		Text:    n.Text("mail."+kind+".text", name, u.Username, n.Product, now.Format("2006-01-02 15:04 UTC")),
	}
	m, err := Outbox(ctx, n.Sealer, u.ID, kind, msg, now)
	if err != nil {
		if n.Log != nil {
			n.Log.WarnContext(ctx, "notification not made", "kind", kind, "err", err)
		}
		return ctx
	}
	m.OncePer = oncePer[kind]
	return storage.WithMail(ctx, m)
}
