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

// refuseClosedEnrollment answers the request with the "ask your
// administrator" page and audits it when the account of a, which has no
// confirmed authenticator, may no longer enroll. It reports whether it
// answered (and an error it answered with a 500 page).
func (h *Handler) refuseClosedEnrollment(w http.ResponseWriter, r *http.Request, a *storage.AuthRequest) (bool, error) {
	u, err := h.store.UserByID(r.Context(), a.UserID)
	if err != nil {
		h.pages.Fail(w, r, pages.Internal("user lookup", err))
		return true, err
	}
	return h.refuseIfEnrollmentClosed(r.Context(), w, a, u), nil
}

// refuseIfEnrollmentClosed is refuseClosedEnrollment for a user at hand.
func (h *Handler) refuseIfEnrollmentClosed(ctx context.Context, w http.ResponseWriter, a *storage.AuthRequest, u storage.User) bool {
	if !h.enrollmentClosed(u, h.now()) {
		return false
	}
	since := "never recorded"
	if !u.EnrollPendingSince.IsZero() {
		since = u.EnrollPendingSince.UTC().Format(time.RFC3339)
	}
	h.metrics.Attempt("password", "enrollment_expired")
	h.trail.Event(ctx, "enrollment_expired", u.ID, u.Username, a.ClientID, "waiting for enrollment since "+since+"; window "+h.cfg.EnrollWithin.String())
	h.pages.ErrorFor(w, http.StatusForbidden, pages.MsgEnrollExpired,
		h.AppErrorURL(a, "access_denied", "the account's authenticator set-up has expired"), h.clients.Name(ctx, a.ClientID))
	return true
}
