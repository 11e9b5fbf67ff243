package account

import (
	"bytes"
	"errors"
	"net/http"
	"time"

	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/storage"
)

// View is what the account page shows of its user: nothing secret (no
// cookie, hash, secret or code), only what the user may know of
// themselves.
type View struct {
	Username, Name, Email string
	EmailVerified         bool
	TOTPSince             string // "" without a confirmed authenticator
	CodesLeft             int
	// Generation is the authenticator's, which a renewal of the codes is
	// made against: a resent or doubled form changes nothing twice.
	Generation      int64
	PasswordChanged string
	Sessions        []SessionRow
	Devices         []DeviceRow
	Events          []EventRow
	// Fresh: the second factor was proven within the reauthentication
	// window, so the actions' forms show; CSRF is their token.
	Fresh      bool
	FreshUntil string
	CSRF       string
	MinLength  int
	// MailOn: the provider sends mail, so the page offers a verification
	// link for an unverified address.
	MailOn bool
}

// SessionRow is one SSO session; This marks the browser looking, Handle
// names it in the form that ends it.
type SessionRow struct {
	Created, LastUsed, From, Browser, Handle string
	This                                     bool
}

// DeviceRow is one remembered browser.
type DeviceRow struct{ Created, LastUsed, Expires, Browser string }

// EventRow is one audit event in plain words (What is a message key).
type EventRow struct{ When, What, From string }

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// view gathers the account page of sess's user.
func (h *Handler) view(r *http.Request, sess storage.Session) (View, error) {
	ctx := r.Context()
	now := h.now()
	u, err := h.store.UserByID(ctx, sess.UserID)
	if err != nil {
		return View{}, pages.Internal("account: user", err)
	}
	v := View{Username: u.Username, Name: u.Name, Email: u.Email, EmailVerified: u.EmailVerified,
		PasswordChanged: stamp(u.PasswordChangedAt), Fresh: h.fresh(sess), CSRF: formToken(h.login.SSOCookie(r)),
		MinLength: h.passwords.MinLength, MailOn: h.notify != nil}
	if v.MinLength <= 0 {
		v.MinLength = password.DefaultMinLength
	}
	if v.Fresh {
		v.FreshUntil = stamp(sess.VerifiedAt.Add(h.reauth))
	}
	if cred, err := h.store.TOTPByUser(ctx, u.ID); err == nil && cred.Confirmed {
		v.TOTPSince, v.Generation = stamp(cred.CreatedAt), cred.Generation
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return View{}, pages.Internal("account: authenticator", err)
	}
	if v.CodesLeft, err = h.store.RecoveryCodesLeft(ctx, u.ID); err != nil {
		return View{}, pages.Internal("account: recovery codes", err)
	}
	sessions, err := h.store.Sessions(ctx, u.ID, now)
	if err != nil {
		return View{}, pages.Internal("account: sessions", err)
	}
	for _, s := range sessions {
		if h.login.IdleOut(s) {
			continue // unusable already: nothing to end
		}
		v.Sessions = append(v.Sessions, SessionRow{Created: stamp(s.CreatedAt), LastUsed: stamp(s.LastSeenAt), From: s.ClientIP,
			Browser: s.UserAgent, This: bytes.Equal(s.IDHash, sess.IDHash), Handle: Handle(s.IDHash)})
	}
	devices, err := h.store.Devices(ctx, u.ID, now)
	if err != nil {
		return View{}, pages.Internal("account: devices", err)
	}
	for _, d := range devices {
		v.Devices = append(v.Devices, DeviceRow{Created: stamp(d.CreatedAt), LastUsed: stamp(d.LastUsedAt), Expires: stamp(d.ExpiresAt),
			Browser: d.UserAgent})
	}
	events, err := h.store.ListAudit(ctx, storage.AuditFilter{UserID: u.ID, Since: now.Add(-eventWindow), Limit: maxEvents, Newest: true})
	if err != nil {
		return View{}, pages.Internal("account: events", err)
	}
	for _, e := range events {
		from := e.ClientIP
		if from == "cli" {
			from = "" // an operator's action: no address of the user's
		}
		v.Events = append(v.Events, EventRow{When: stamp(e.Time), What: h.eventKey(e.Type), From: from})
	}
	return v, nil
}

// eventKey is the message key of an audit event type; types without a
// sentence of their own are "another security event".
func (h *Handler) eventKey(typ string) string {
	k := "event." + typ
	if h.pages.Has(k) {
		return k
	}
	return "event.other"
}
