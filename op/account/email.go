package account

import (
	"errors"
	"net/http"
	"strings"

	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/storage"
)

// The e-mail routes (issue 13, item 3).
const (
	// EmailPath changes the address (behind fresh reauthentication);
	// EmailLinkPath mails a verification link to the current one;
	// VerifyEmailPath is the link's page (GET shows a button, POST uses
	// the link: a mail scanner that fetches links uses nothing).
	EmailPath       = "/account/email"
	EmailLinkPath   = "/account/email/link"
	VerifyEmailPath = "/account/email/verify"
)

// sendVerification mails u a verification link to its address. Limited
// to one per 5 minutes (storage.ErrLimited).
func (h *Handler) sendVerification(r *http.Request, u storage.User) error {
	err := h.notify.SendLink(r.Context(), u, u.Email, storage.LinkVerifyEmail, h.issuer+VerifyEmailPath)
	if err == nil {
		h.trail.Event(r.Context(), "email_verification_sent", u.ID, u.Username, ClientID, "to "+mail.Mask(u.Email))
	}
	return err
}

// emailLink mails the signed-in user a verification link to the address
// the account has, when it is not verified yet.
func (h *Handler) emailLink(w http.ResponseWriter, r *http.Request) error {
	sess, err := h.posted(r)
	if err != nil {
		return err
	}
	u, err := h.store.UserByID(r.Context(), sess.UserID)
	if err != nil {
		return pages.Internal("account: user", err)
	}
	if h.notify == nil || u.Email == "" || u.EmailVerified {
		return h.again(w, r, sess, http.StatusBadRequest, msgBadForm, "")
	}
	switch err := h.sendVerification(r, u); {
	case errors.Is(err, storage.ErrLimited):
		return h.again(w, r, sess, http.StatusTooManyRequests, "account.link_wait", "")
	case err != nil:
		return pages.Internal("account: verification link", err)
	}
	return h.again(w, r, sess, http.StatusOK, "", "account.link_sent")
}

// changeEmail sets a new address, behind fresh reauthentication and the
// current password (the address is where a reset link goes, so it is
// changed like a factor: a stolen session, even within the window, is not
// enough; review G, F7): it is unverified until its link is used
// (email_verified tells the truth), the link goes to it, and the old
// address, if verified, hears of the change.
func (h *Handler) changeEmail(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	sess, u, done, err := h.change(w, r)
	if done || err != nil {
		return err
	}
	next := strings.TrimSpace(r.PostFormValue("email"))
	if _, err := mail.Address(next); err != nil {
		return h.again(w, r, sess, http.StatusBadRequest, "account.bad_email", "")
	}
	if strings.EqualFold(next, u.Email) {
		return h.again(w, r, sess, http.StatusBadRequest, "account.same_email", "")
	}
	if done, err := h.currentPassword(w, r, sess, u, r.PostFormValue("current"), "email_change_password_failed"); done || err != nil {
		return err
	}
	old := u
	if h.notify != nil {
		// The new address's link first: a change it cannot have (the
		// account's 5 links an hour are spent, or the address's 3) is not
		// made, so changing the address cannot mail without end (review
		// H, F3). A link written before the change is harmless if the
		// change then fails: it verifies only the address the account
		// has (storage.Store.VerifyEmail).
		u.Email, u.EmailVerified = next, false
		switch err := h.sendVerification(r, u); {
		case errors.Is(err, storage.ErrLimited):
			return h.again(w, r, sess, http.StatusTooManyRequests, "account.email_wait", "")
		case err != nil:
			return pages.Internal("account: verification link to the new address", err)
		}
	}
	no := false
	if err := h.store.UpdateUser(ctx, u.ID, storage.UserUpdate{Email: &next, EmailVerified: &no}); err != nil {
		return pages.Internal("account: change address", err)
	}
	notice := ctx
	if old.EmailVerified {
		notice = h.notify.WithTo(ctx, old, old.Email, mail.EmailChanged, mail.Mask(next), mail.HowAccount)
	}
	h.trail.Event(notice, "email_changed", u.ID, u.Username, ClientID, "on the account page, to "+mail.Mask(next)+"; unverified")
	if h.notify == nil {
		return h.again(w, r, sess, http.StatusOK, "", "account.email_saved")
	}
	return h.again(w, r, sess, http.StatusOK, "", "account.email_saved_link")
}

// verifyEmailPage shows the link's confirmation button (GET uses nothing).
func (h *Handler) verifyEmailPage(w http.ResponseWriter, r *http.Request) error {
	digest := mail.LinkDigest(r.URL.Query().Get("t"))
	if digest == nil {
		return h.linkInvalid()
	}
	l, err := h.store.LinkByDigest(r.Context(), digest)
	if errors.Is(err, storage.ErrNotFound) || err == nil && (l.Purpose != storage.LinkVerifyEmail || !l.UsedAt.IsZero() || !h.now().Before(l.ExpiresAt)) {
		return h.linkInvalid()
	}
	if err != nil {
		return pages.Internal("account: verification link", err)
	}
	h.pages.Render(w, http.StatusOK, "verifyemail", pages.Data{Title: "title.verify_email", Email: l.Email, Token: r.URL.Query().Get("t")})
	return nil
}

// verifyEmail uses the link (storage.Store.VerifyEmail).
func (h *Handler) verifyEmail(w http.ResponseWriter, r *http.Request) error {
	digest := mail.LinkDigest(r.PostFormValue("t"))
	if digest == nil {
		return h.linkInvalid()
	}
	u, err := h.store.VerifyEmail(r.Context(), digest, h.now())
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return h.linkInvalid()
	case errors.Is(err, storage.ErrWrongState):
		return &pages.Error{Status: http.StatusConflict, Msg: "account.link_address_changed", What: "verify email: the address changed", Back: Path}
	case errors.Is(err, storage.ErrConflict):
		return &pages.Error{Status: http.StatusConflict, Msg: "account.email_taken", What: "verify email: address verified by another account", Back: Path}
	case err != nil:
		return pages.Internal("account: verify email", err)
	}
	h.trail.Event(r.Context(), "email_verified", u.ID, u.Username, ClientID, mail.Mask(u.Email))
	h.pages.Render(w, http.StatusOK, "verifyemail", pages.Data{Title: "title.verify_email", Email: u.Email, Done: true})
	return nil
}

func (h *Handler) linkInvalid() error {
	return &pages.Error{Status: http.StatusGone, Msg: "account.link_invalid", What: "verify email: link used, expired or unknown", Back: Path}
}
