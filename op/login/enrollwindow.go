package login

import (
	"context"
	"net/http"
	"time"

	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/storage"
)

// enrollmentClosed reports whether u, who has no confirmed authenticator,
// is past the window in which the password alone may lead to enrollment
// (Config.EnrollWithin from User.EnrollPendingSince). An account without a
// recorded start is closed: nobody put it in that state on purpose.
func (h *Handler) enrollmentClosed(u storage.User, now time.Time) bool {
	return u.EnrollPendingSince.IsZero() || !now.Before(u.EnrollPendingSince.Add(h.cfg.EnrollWithin))
}

// enrollmentClosedFor is enrollmentClosedAt for the account of a, which
// has no confirmed authenticator.
func (h *Handler) enrollmentClosedFor(r *http.Request, a *storage.AuthRequest) error {
	u, err := h.store.UserByID(r.Context(), a.UserID)
	if err != nil {
		return pages.Internal("user lookup", err)
	}
	return h.enrollmentClosedAt(r.Context(), a, u)
}

// enrollmentClosedAt audits and returns the "ask your administrator" page
// when u, who has no confirmed authenticator, may no longer enroll; nil
// while the window is open.
func (h *Handler) enrollmentClosedAt(ctx context.Context, a *storage.AuthRequest, u storage.User) error {
	if !h.enrollmentClosed(u, h.now()) {
		return nil
	}
	since := "never recorded"
	if !u.EnrollPendingSince.IsZero() {
		since = u.EnrollPendingSince.UTC().Format(time.RFC3339)
	}
	h.metrics.Attempt("password", "enrollment_expired")
	h.trail.Event(ctx, "enrollment_expired", u.ID, u.Username, a.ClientID, "waiting for enrollment since "+since+"; window "+h.cfg.EnrollWithin.String())
	return &pages.Error{Status: http.StatusForbidden, Msg: pages.MsgEnrollExpired, What: "enrollment window closed",
		Back: h.AppErrorURL(a, "access_denied", "the account's authenticator set-up has expired"), Client: h.clients.Name(ctx, a.ClientID)}
}
