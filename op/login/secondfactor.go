package login

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/totp-idp/idp/op/guard"
	"github.com/totp-idp/idp/op/httpx"
	"github.com/totp-idp/idp/op/mail"
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
	secret     []byte // the TOTP secret the code is checked against (secretFor)
	claim      storage.AttemptClaim
}

// secondForm describes one second-factor form.
type secondForm struct {
	field, kind, badMsg string
	normalize           func(string) (string, bool)
	// form is the form's page again with status and msg, as the answer
	// to a bad or wrong value (a *pages.Form, or the failure to build it).
	form func(a *storage.AuthRequest, flowSecret string, status int, msg string) error
	// secretFor, when set, reads and opens the secret the code will be
	// checked against. It runs before the claim: a secret that cannot be
	// read must not cost the account an attempt that is never evaluated
	// and never recorded.
	secretFor func(ctx context.Context, a *storage.AuthRequest) ([]byte, error)
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
// a correct password in this flow leads here, docs/THREAT-MODEL.md
// R-T4/R-T5), the state of the account's authenticator, the input check,
// and the guard's claim on the one TOTP counter (docs/THREAT-MODEL.md
// rule 3, R-A8). When a check fails it returns the answer as an error; a
// malformed value gets the form again with 400 and counts nothing.
func (h *Handler) secondFactorForm(r *http.Request, f secondForm) (secondStep, error) {
	ctx := r.Context()
	a, flowSecret, err := h.loadFlow(r)
	if err != nil {
		return secondStep{}, err
	}
	stageOK := a.Stage == storage.StagePasswordOK || f.afterEnrollment && a.Stage == storage.StageEnrolled
	if !stageOK || a.UserID == "" {
		return secondStep{}, &pages.SeeOther{URL: URL(a.ID)}
	}
	enrolled, err := h.hasTOTP(ctx, a.UserID)
	if err != nil {
		return secondStep{}, pages.Internal("totp lookup", err)
	}
	switch {
	case f.enrolls && (enrolled || a.PendingTOTP == nil):
		// Nothing to enroll: the account has its authenticator, or the
		// flow has no pending secret yet (the login page makes one). No
		// code is evaluated, so nothing is claimed: a claim here would
		// count on the TOTP counter without any failure being recorded.
		return secondStep{}, &pages.SeeOther{URL: URL(a.ID)}
	case f.enrolls:
		if err := h.enrollmentClosedFor(r, &a); err != nil {
			return secondStep{}, err
		}
	case !enrolled:
		// No confirmed authenticator (never enrolled, or reset): nothing
		// for a code to prove or a recovery code to stand in for. The
		// login page enrolls, or says the enrollment window closed.
		h.trail.Event(ctx, "second_factor_refused", a.UserID, "", a.ClientID, f.kind+": no confirmed authenticator")
		return secondStep{}, &pages.SeeOther{URL: URL(a.ID)}
	}
	value, ok := f.normalize(r.PostFormValue(f.field))
	if !ok {
		return secondStep{}, f.form(&a, flowSecret, http.StatusBadRequest, f.badMsg)
	}
	var secret []byte
	if f.secretFor != nil {
		if secret, err = f.secretFor(ctx, &a); err != nil {
			return secondStep{}, err
		}
	}
	// The one claim on the TOTP counter. From here every way out either
	// evaluates the code (a success resets the counter, a failure is
	// recorded: rejected), gives the claim back (givenBack), records it
	// as not evaluated (notEvaluated), or is a server failure.
	claim, err := h.guard.Claim(ctx, a.UserID, "", a.ClientID, storage.FactorTOTP)
	if err != nil {
		return secondStep{}, pages.Internal(f.kind+" claim", err)
	}
	if !claim.Allowed {
		h.metrics.Attempt(f.kind, "locked")
		return secondStep{}, h.locked(&a, claim)
	}
	return secondStep{a: a, flowSecret: flowSecret, value: value, secret: secret, claim: claim}, nil
}

// locked is the guard's refusal of claim, with the way back to the
// application.
func (h *Handler) locked(a *storage.AuthRequest, claim storage.AttemptClaim) error {
	return &pages.Locked{Retry: claim.RetryAfter, Hard: claim.HardLocked, Now: h.now(),
		Back: h.AppErrorURL(a, "access_denied", "too many failed attempts")}
}

// loginCompleted finishes a login whose request the store has just moved
// to done: audit, a renewed flow cookie (docs/THREAT-MODEL.md R-W2), an
// SSO session, the remembered device. The caller answers on success.
func (h *Handler) loginCompleted(ctx context.Context, w http.ResponseWriter, r *http.Request, st *secondStep, amr []string, now time.Time) error {
	a := &st.a
	a.AMR, a.ACR = amr, h.cfg.ACR
	if _, err := h.renewFlowCookie(ctx, w, a, st.flowSecret); err != nil {
		return errRenewed
	}
	// A disabled account learns it now, after both factors, and gets no
	// session (AccountGate).
	if gate := h.AccountGate(r, a); gate != nil && !errors.Is(gate, ErrMustChange) {
		return gate
	}
	if err := h.openSession(w, r, a, now); err != nil {
		// No code without a session (callbackBinding): the login page
		// retries opening it after a server failure.
		return err
	}
	// Both factors proven in this browser: it is remembered, and its
	// later password attempts count on its own counter (op/guard).
	known := h.guard.RememberDevice(ctx, w, r, a.UserID, a.SessionHash, now)
	detail := "amr=" + strings.Join(amr, ",")
	if !known {
		detail += "; a new browser"
		if h.cfg.NewDeviceNotice {
			// Both factors from a browser that never completed a sign-in
			// to this account: its owner hears of it (issue 13, item 4).
			ctx = h.notify.With(ctx, a.UserID, mail.NewDevice, guard.CleanUserAgent(r.UserAgent()), httpx.RequestFrom(ctx).IPString())
		}
	}
	h.trail.Event(ctx, "login_completed", a.UserID, "", a.ClientID, detail)
	return nil
}

// checkCode evaluates a TOTP code against secret on the server's clock. On
// a mismatch it audits the failure (already counted by the claim) and
// returns the form again with 401.
func (h *Handler) checkCode(ctx context.Context, st *secondStep, secret []byte, now time.Time, failEvent string, f secondForm) (int64, error) {
	step, match := totp.Match(secret, st.value, now)
	h.metrics.Attempt("totp", "evaluated")
	if !match {
		return step, h.rejected(ctx, st, f, "failed", failEvent, pages.MsgWrongCode)
	}
	return step, nil
}

// givenBack answers a right code whose request had moved on meanwhile (the
// same form sent twice, another tab): the code was right, so its claim is
// given back as a success gives it (storage.Store.AttemptSucceeded), and
// the login page shows where the sign-in is.
func (h *Handler) givenBack(ctx context.Context, st *secondStep) error {
	if err := h.guard.CodeSucceeded(ctx, st.a.UserID, st.claim); err != nil {
		return pages.Internal("give back a right code's claim", err)
	}
	return &pages.SeeOther{URL: URL(st.a.ID)}
}

// notEvaluated records a claim whose code was never checked because the
// flow or the authenticator changed under it (an operator reset, another
// tab): it stays counted, with its own row and no "after password" alert.
func (h *Handler) notEvaluated(ctx context.Context, st *secondStep, event string) error {
	h.guard.NotEvaluated(ctx, st.claim, event, st.a.UserID, st.a.ClientID)
	return &pages.SeeOther{URL: URL(st.a.ID)}
}

// rejected records a wrong second factor, already counted by the claim
// (metrics result, audit event), and returns form f again with 401 and
// msg.
func (h *Handler) rejected(ctx context.Context, st *secondStep, f secondForm, result, event, msg string) error {
	h.metrics.Attempt(f.kind, result)
	h.guard.Failed(ctx, st.claim, event, st.a.UserID, "", st.a.ClientID, storage.FactorTOTP, "", "")
	return f.form(&st.a, st.flowSecret, http.StatusUnauthorized, msg)
}
