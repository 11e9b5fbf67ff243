package login

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/totp"
	"github.com/totp-idp/idp/storage"
)

// secondStep is a posted second-factor form (TOTP, enrollment or recovery
// code) that passed the checks every such form shares.
type secondStep struct {
	a          storage.AuthRequest
	flowSecret string
	value      string // the normalised code
	claim      storage.AttemptClaim
}

// secondForm describes one second-factor form.
type secondForm struct {
	field, kind, badMsg string
	normalize           func(string) (string, bool)
	render              func(*storage.AuthRequest, string, int, string)
	// enrolls: the form binds a new authenticator (it needs an open
	// enrollment window); otherwise it checks a code of a confirmed one or
	// a recovery code standing in for it (it needs one).
	enrolls bool
	// afterEnrollment: the form also serves a request that enrolled in
	// this flow. Only the TOTP form does: the authenticator was bound on
	// the strength of the password alone (docs/THREAT-MODEL.md rule 7).
	afterEnrollment bool
}

// secondFactorForm does what every path that accepts a second factor
// shares, in one place: the flow and its browser binding, the stage (only
// a correct password in this flow leads here, docs/THREAT-MODEL.md R-T4/R-T5), the state of the
// account's authenticator, the input check, and the guard's claim on the
// one TOTP counter (docs/THREAT-MODEL.md rule 3, R-A8). It answers the request itself and
// returns false when a check fails; a malformed value is answered by
// render with 400 and counts nothing.
func (h *Handler) secondFactorForm(w http.ResponseWriter, r *http.Request, f secondForm) (secondStep, bool) {
	ctx := r.Context()
	a, flowSecret, err := h.loadFlow(r)
	if err != nil {
		h.pages.Fail(w, r, err)
		return secondStep{}, false
	}
	stageOK := a.Stage == storage.StagePasswordOK || f.afterEnrollment && a.Stage == storage.StageEnrolled
	if !stageOK || a.UserID == "" {
		http.Redirect(w, r, URL(a.ID), http.StatusSeeOther)
		return secondStep{}, false
	}
	enrolled, err := h.hasTOTP(ctx, a.UserID)
	if err != nil {
		h.pages.Fail(w, r, pages.Internal("totp lookup", err))
		return secondStep{}, false
	}
	switch {
	case f.enrolls && !enrolled:
		if closed, err := h.refuseClosedEnrollment(w, r, &a); err != nil || closed {
			return secondStep{}, false
		}
	case !f.enrolls && !enrolled:
		// No confirmed authenticator (never enrolled, or reset): nothing
		// for a code to prove or a recovery code to stand in for. The
		// login page enrolls, or says the enrollment window closed.
		h.trail.Event(ctx, "second_factor_refused", a.UserID, "", a.ClientID, f.kind+": no confirmed authenticator")
		http.Redirect(w, r, URL(a.ID), http.StatusSeeOther)
		return secondStep{}, false
	}
	value, ok := f.normalize(r.PostFormValue(f.field))
	if !ok {
		f.render(&a, flowSecret, http.StatusBadRequest, f.badMsg)
		return secondStep{}, false
	}
	claim, err := h.guard.Claim(ctx, a.UserID, "", a.ClientID, storage.FactorTOTP)
	if err != nil {
		h.pages.Fail(w, r, pages.Internal(f.kind+" claim", err))
		return secondStep{}, false
	}
	if !claim.Allowed {
		h.metrics.Attempt(f.kind, "locked")
		h.pages.Locked(w, claim.RetryAfter, claim.HardLocked, h.now(), h.AppErrorURL(&a, "access_denied", "too many failed attempts"))
		return secondStep{}, false
	}
	return secondStep{a: a, flowSecret: flowSecret, value: value, claim: claim}, true
}

// loginCompleted finishes a login whose request the store has just moved
// to done: audit, a renewed flow cookie (docs/THREAT-MODEL.md R-W2), an
// SSO session, the remembered device. The caller answers on success.
func (h *Handler) loginCompleted(ctx context.Context, w http.ResponseWriter, r *http.Request, st *secondStep, amr []string, now time.Time) error {
	a := &st.a
	a.AMR, a.ACR = amr, h.cfg.ACR
	if _, err := h.renewFlowCookie(ctx, w, a, st.flowSecret); err != nil {
		return &pages.Error{Status: http.StatusForbidden, Msg: pages.MsgOtherBrowser, What: "renew flow cookie"}
	}
	if err := h.openSession(w, r, a, now); err != nil {
		// No code without a session (callbackBinding): the login page
		// retries opening it.
		return pages.Internal("open sso session", err)
	}
	// Both factors proven in this browser: it is remembered, and its
	// later password attempts count on its own counter (devices.go).
	h.guard.RememberDevice(ctx, w, r, a.UserID, now)
	h.trail.Event(ctx, "login_completed", a.UserID, "", a.ClientID, "amr="+strings.Join(amr, ","))
	return nil
}

// checkCode evaluates a TOTP code against secret on the server's clock. On
// a mismatch it audits the failure (already counted by the claim) and
// re-renders the form with 401.
func (h *Handler) checkCode(ctx context.Context, st *secondStep, secret []byte, now time.Time,
	failEvent string, render func(*storage.AuthRequest, string, int, string)) (int64, bool) {
	step, match := totp.Match(secret, st.value, now)
	h.metrics.Attempt("totp", "evaluated")
	if !match {
		h.metrics.Attempt("totp", "failed")
		h.guard.Failed(ctx, st.claim, failEvent, st.a.UserID, "", st.a.ClientID, storage.FactorTOTP, "", "")
		render(&st.a, st.flowSecret, http.StatusUnauthorized, pages.MsgWrongCode)
	}
	return step, match
}
