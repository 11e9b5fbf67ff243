package mail

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/totp-idp/idp/storage"
)

// Notification kinds (issue 13, item 4; README, "E-mail"). Each is written
// with the audit row of the event that causes it (storage.WithMail), so
// every notification has its audit event and no event its notice twice.
const (
	// SecondFactorFailed: a wrong second factor right after the correct
	// password, so someone knows the password; at most one an hour.
	SecondFactorFailed = "second_factor_failed"
	// SecondFactorLocked: wrong codes locked the second step.
	SecondFactorLocked = "second_factor_locked"
	// PasswordChanged: on the account page, at a sign-in the operator
	// required it, or by the operator (args: how, a catalogue key).
	PasswordChanged = "password_changed"
	// AuthenticatorAdded, AuthenticatorReplaced, AuthenticatorRemoved: the
	// TOTP authenticator (NIST SP 800-63B-4 §4.6: notify on binding
	// changes).
	AuthenticatorAdded    = "authenticator_added"
	AuthenticatorReplaced = "authenticator_replaced"
	AuthenticatorRemoved  = "authenticator_removed"
	// RecoveryCodesRenewed: a new set of recovery codes; the old are void.
	RecoveryCodesRenewed = "recovery_codes_renewed"
	// RecoveryCodeUsed: a recovery code was spent (args: how many are left).
	RecoveryCodeUsed = "recovery_code_used"
	// NewDevice: a sign-in completed in a browser without this account's
	// device cookie (args: the browser, its address).
	NewDevice = "new_device"
	// EmailChanged goes to the old address (args: the new one, masked).
	EmailChanged = "email_changed"
)

// oncePer are the kinds sent at most once per period to one account: the
// ones an attacker who knows the password can cause at will.
var oncePer = map[string]time.Duration{SecondFactorFailed: time.Hour, SecondFactorLocked: time.Hour}

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
// they read mail; README, "E-mail"). args are the kind's own values, after
// the four every text gets (name, username, product, time).
func (n *Notifier) With(ctx context.Context, userID, kind string, args ...any) context.Context {
	if n == nil || userID == "" {
		return ctx
	}
	u, err := n.Store.UserByID(ctx, userID)
	if err != nil || u.Email == "" || !u.EmailVerified {
		return ctx
	}
	return n.WithTo(ctx, u, u.Email, kind, args...)
}

// WithTo is With for a message to address to, whether or not verified:
// the verification link to a new address, the notice of a change to the
// old one.
func (n *Notifier) WithTo(ctx context.Context, u storage.User, to, kind string, args ...any) context.Context {
	if n == nil || to == "" {
		return ctx
	}
	m, err := n.Make(ctx, u, to, kind, args...)
	if err != nil {
		if n.Log != nil {
			n.Log.WarnContext(ctx, "notification not made", "kind", kind, "err", err)
		}
		return ctx
	}
	return storage.WithMail(ctx, m)
}

// Make is the outbox row of notification kind to u at address to.
func (n *Notifier) Make(ctx context.Context, u storage.User, to, kind string, args ...any) (storage.Mail, error) {
	now := time.Now().UTC()
	if n.Now != nil {
		now = n.Now().UTC()
	}
	name := u.Name
	if name == "" {
		name = u.Username
	}
	all := []any{name, u.Username, n.Product, now.Format("2006-01-02 15:04 UTC")}
	for _, a := range args {
		if k, ok := a.(Key); ok {
			a = n.Text(string(k))
		}
		all = append(all, a)
	}
	// The catalogue's sentence is checked with stand-ins of the same
	// types: a kind without its sentence or given the wrong arguments is
	// never sent (no bare key, no format error), while a "%!" that a user
	// or a browser put in a value is just text (review H, F1: it dropped
	// the notice).
	probe := make([]any, len(all))
	for i, a := range all {
		switch a.(type) {
		case string:
			probe[i] = "x"
		default:
			probe[i] = a
		}
	}
	if t := n.Text("mail."+kind+".text", probe...); strings.HasPrefix(t, "mail.") || strings.Contains(t, "%!") {
		return storage.Mail{}, fmt.Errorf("mail: no catalogue text for %q with these arguments", kind)
	}
	text := n.Text("mail."+kind+".text", all...)
	msg := Message{To: to, Subject: n.Text("mail."+kind+".subject", n.Product), Text: text}
	msg.HTML = HTML(msg.Subject, text)
	m, err := Outbox(ctx, n.Sealer, u.ID, kind, msg, now)
	if err != nil {
		return storage.Mail{}, err
	}
	m.OncePer = oncePer[kind]
	return m, nil
}

// Key is an argument that is itself a catalogue key (mail.how.*), put in
// the text in the catalogue's words.
type Key string

// How a password, an authenticator or an address was changed.
const (
	HowAccount  Key = "mail.how.account"
	HowSignIn   Key = "mail.how.signin"
	HowOperator Key = "mail.how.operator"
	HowReset    Key = "mail.how.reset"
)

// Mask shows enough of an address for its owner to recognise it and not
// all of it (the old address may no longer be the user's): "a…@example.com".
func Mask(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return "…"
	}
	r := []rune(addr[:at])
	return string(r[0]) + "…" + addr[at:]
}
