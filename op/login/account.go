package login

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/storage"
)

// ErrMustChange: the account must choose a new password before its code
// (idp user set-password --must-change); the login page shows the form.
var ErrMustChange = errors.New("the password must be changed first")

// AccountGate is what the done request a's account allows before its code
// is issued: nil, ErrMustChange, or the page of a disabled account. The
// disabled state shows only here, after both factors: before them a
// disabled account answers exactly as an enabled one, so disabling reveals
// nothing to someone without the factors.
func (h *Handler) AccountGate(r *http.Request, a *storage.AuthRequest) error {
	u, err := h.store.UserByID(r.Context(), a.UserID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return h.LinkError(r, a.ID, err)
		}
		return pages.Internal("account after the second factor", err)
	}
	if !u.DisabledAt.IsZero() {
		h.trail.Event(r.Context(), "login_refused", a.UserID, "", a.ClientID, "account disabled")
		return &pages.Error{Status: http.StatusForbidden, Msg: pages.MsgDisabled, What: "account disabled",
			Back: h.AppErrorURL(a, "access_denied", "the account is disabled"), Client: h.clients.Name(r.Context(), a.ClientID)}
	}
	if u.MustChangePassword {
		return ErrMustChange
	}
	return nil
}

func (h *Handler) newPasswordForm(r *http.Request, a *storage.AuthRequest, flowSecret string, status int, username, msg string) *pages.Form {
	minLen := h.cfg.Passwords.MinLength
	if minLen <= 0 {
		minLen = password.DefaultMinLength
	}
	return &pages.Form{Status: status, Page: "newpassword", Data: pages.Data{
		Title: "title.newpassword", ClientName: h.clients.Name(r.Context(), a.ClientID), ID: a.ID,
		CSRF: CSRFToken(flowSecret, a.ID), Username: username, Error: msg, Left: minLen,
	}}
}

// newPasswordStep takes the password the user must choose after both
// factors (docs/THREAT-MODEL.md R-S5): twice, under the password rules, not
// the current one. Storing it keeps this browser's session and this
// sign-in and ends everything else (storage.Store.SetPassword); then the
// callback issues the code.
func (h *Handler) newPasswordStep(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	a, flowSecret, err := h.loadFlow(r)
	if err != nil {
		return err
	}
	if !a.Done() || len(a.SessionHash) == 0 {
		return &pages.SeeOther{URL: URL(a.ID)}
	}
	u, err := h.store.UserByID(ctx, a.UserID)
	if err != nil {
		return pages.Internal("user for a new password", err)
	}
	if !u.MustChangePassword {
		return &pages.SeeOther{URL: h.callbackURL(a.ID)}
	}
	if err := h.AccountGate(r, &a); err != nil && !errors.Is(err, ErrMustChange) {
		return err
	}
	pw, repeat := r.PostFormValue("new"), r.PostFormValue("repeat")
	if pw != repeat {
		return h.newPasswordForm(r, &a, flowSecret, http.StatusBadRequest, u.Username, pages.MsgPasswordsDiffer)
	}
	var weak *password.WeakError
	if err := h.cfg.Passwords.Check(pw, u.Username, u.Email); errors.As(err, &weak) {
		return h.newPasswordForm(r, &a, flowSecret, http.StatusBadRequest, u.Username, pages.MsgWeak(string(weak.Reason)))
	} else if err != nil {
		return pages.Internal("password rules", err)
	}
	same, err := h.hasher.Verify(ctx, u.PasswordHash, pw)
	if errors.Is(err, password.ErrBusy) {
		h.pages.Error(w, http.StatusServiceUnavailable, pages.MsgBusy, URL(a.ID))
		return nil
	}
	if err != nil {
		return pages.Internal("compare with the current password", err)
	}
	if same {
		return h.newPasswordForm(r, &a, flowSecret, http.StatusBadRequest, u.Username, pages.MsgSamePassword)
	}
	hash, err := h.hasher.Hash(ctx, pw)
	if errors.Is(err, password.ErrBusy) {
		h.pages.Error(w, http.StatusServiceUnavailable, pages.MsgBusy, URL(a.ID))
		return nil
	}
	if err != nil {
		return pages.Internal("hash the new password", err)
	}
	// Only over the password read above and with this browser's session
	// still live: an operator's reset, a disable or an ending in between
	// wins (second review of issue 12, F1).
	ended, err := h.store.SetPassword(ctx, u.ID, storage.PasswordChange{Hash: hash, Keep: a.SessionHash, OldHash: u.PasswordHash}, h.now())
	if errors.Is(err, storage.ErrWrongState) {
		return h.LinkError(r, a.ID, storage.ErrNotFound)
	}
	if err != nil {
		return pages.Internal("store the new password", err)
	}
	h.trail.Event(h.notify.With(ctx, u.ID, mail.PasswordChanged, mail.HowSignIn), "password_changed", u.ID, "", a.ClientID, "required by the operator; "+endedSummary(ended))
	return &pages.SeeOther{URL: h.callbackURL(a.ID)}
}

// endedSummary counts what a change ended, for the audit trail.
func endedSummary(e storage.Ended) string {
	return fmt.Sprintf("ended %d other sessions, %d devices, %d sign-ins in progress, %d tokens", e.Sessions, e.Devices, e.SignIns, e.Tokens)
}
