package login

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"image/png"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/pquerna/otp"

	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/op/totp"
	"github.com/totp-idp/idp/storage"
)

// amrPasswordRecovery is the amr of a login finished with a recovery code:
// a password and a look-up secret, two factors, but no OTP device.
var amrPasswordRecovery = []string{"pwd", "rc", "mfa"}

// hasTOTP reports whether the user has a confirmed authenticator.
func (h *Handler) hasTOTP(ctx context.Context, userID string) (bool, error) {
	c, err := h.store.TOTPByUser(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return c.Confirmed, nil
}

// pendingSecret returns the request's pending enrollment secret, creating
// one on first use. The secret is not regenerated while the flow lives
// (other products' hole: a new secret behind a pending challenge).
func (h *Handler) pendingSecret(ctx context.Context, a *storage.AuthRequest) ([]byte, error) {
	if a.PendingTOTP != nil {
		if secret, err := h.sealer.Open(seal.AADPendingTOTP(a.ID), a.PendingTOTP); err == nil {
			return secret, nil
		}
	}
	secret, err := totp.NewSecret()
	if err != nil {
		return nil, err
	}
	sealed, err := h.sealer.Seal(ctx, seal.AADPendingTOTP(a.ID), secret)
	if err != nil {
		return nil, err
	}
	// replace only a value that did not open (sealed under a lost key).
	replace := a.PendingTOTP != nil
	err = h.store.SetPendingTOTP(ctx, a.ID, a.UserID, sealed, replace, h.now())
	if errors.Is(err, storage.ErrWrongState) && !replace {
		// Another tab was first: use its secret.
		fresh, err := h.store.AuthRequestByID(ctx, a.ID, h.now())
		if err != nil || fresh.PendingTOTP == nil {
			return nil, storage.ErrWrongState
		}
		return h.sealer.Open(seal.AADPendingTOTP(a.ID), fresh.PendingTOTP)
	}
	if err != nil {
		return nil, err
	}
	a.PendingTOTP = sealed
	return secret, nil
}

func (h *Handler) totpKey(ctx context.Context, userID string, secret []byte) (*otp.Key, error) {
	u, err := h.store.UserByID(ctx, userID)
	if err != nil {
		return nil, err
	}
	return totp.Key(h.cfg.Product, u.Username, secret)
}

// enrollForm is the enrollment page: only reachable in password_ok, that
// is after a correct password in this very flow (docs/THREAT-MODEL.md
// R-T4).
func (h *Handler) enrollForm(r *http.Request, a *storage.AuthRequest, flowSecret string, status int, msg string) (*pages.Form, error) {
	ctx := r.Context()
	secret, err := h.pendingSecret(ctx, a)
	if err != nil {
		return nil, pages.Internal("pending totp", err)
	}
	key, err := h.totpKey(ctx, a.UserID, secret)
	if err != nil {
		return nil, pages.Internal("totp key", err)
	}
	return &pages.Form{Status: status, Page: "enroll", Data: pages.Data{
		Title: "title.enroll", ClientName: h.clients.Name(ctx, a.ClientID), ID: a.ID,
		CSRF: CSRFToken(flowSecret, a.ID), Error: msg,
		QRURL: "/login/enroll/qr.png?id=" + url.QueryEscape(a.ID), Secret: totp.GroupKey(key.Secret()),
	}}, nil
}

// enrollQR serves the QR code as a PNG rendered here: no external service
// ever sees the secret. Anything but the bound browser of a request at
// enrollment gets the not-found page, whatever the reason.
func (h *Handler) enrollQR(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	notFound := &pages.Error{Status: http.StatusNotFound, Msg: pages.MsgNotFound, What: "enrollment qr"}
	a, err := h.store.AuthRequestByID(ctx, r.URL.Query().Get("id"), h.now())
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return pages.Internal("auth request lookup", err)
	}
	if err != nil || !h.BoundToBrowser(r, &a) || a.Stage != storage.StagePasswordOK || a.PendingTOTP == nil {
		return notFound
	}
	if u, err := h.store.UserByID(ctx, a.UserID); err != nil || h.enrollmentClosed(u, h.now()) {
		return notFound
	}
	secret, err := h.sealer.Open(seal.AADPendingTOTP(a.ID), a.PendingTOTP)
	if err != nil {
		return notFound
	}
	key, err := h.totpKey(ctx, a.UserID, secret)
	if err != nil {
		return pages.Internal("totp key", err)
	}
	img, err := key.Image(200, 200)
	if err != nil {
		return pages.Internal("qr image", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return pages.Internal("qr png", err)
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
	return nil
}

// enrollStep confirms the pending secret with a code from it. Attempts go
// through the guard like any TOTP attempt; the code's step is consumed.
// Confirming does not finish the login: the authenticator was bound on the
// strength of the password alone, so the request moves to enrolled and
// completes only through the TOTP step, with a code of a later time step
// (docs/THREAT-MODEL.md rule 7).
func (h *Handler) enrollStep(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	form := secondForm{field: "code", kind: "totp", badMsg: pages.MsgBadCode, normalize: totp.Normalize, enrolls: true,
		form: func(a *storage.AuthRequest, secret string, status int, msg string) error {
			f, err := h.enrollForm(r, a, secret, status, msg)
			if err != nil {
				return err
			}
			return f
		},
		secretFor: func(_ context.Context, a *storage.AuthRequest) ([]byte, error) {
			secret, err := h.sealer.Open(seal.AADPendingTOTP(a.ID), a.PendingTOTP)
			if err != nil {
				// Sealed under a lost key: the login page seals a new
				// one (pendingSecret).
				return nil, &pages.SeeOther{URL: URL(a.ID)}
			}
			return secret, nil
		}}
	st, err := h.secondFactorForm(r, form)
	if err != nil {
		return err
	}
	a, secret := &st.a, st.secret
	now := h.now()
	step, err := h.checkCode(ctx, &st, secret, now, "enrollment_failed", form)
	if err != nil {
		return err
	}
	// The password and the new authenticator's code are both proven: a
	// disabled account learns it now and plants nothing (ConfirmEnrollment
	// refuses it too; review of issue 12, F2).
	if gate := h.AccountGate(r, a); gate != nil && !errors.Is(gate, ErrMustChange) {
		return gate
	}
	sealed, err := h.sealer.Seal(ctx, seal.AADTOTP(a.UserID), secret)
	if err != nil {
		return pages.Internal("seal totp", err)
	}
	codes, hashes, err := totp.NewRecoveryCodes()
	if err != nil {
		return pages.Internal("recovery codes", err)
	}
	cred := storage.TOTPCredential{UserID: a.UserID, Secret: sealed, Confirmed: true, LastStep: step, CreatedAt: now}
	if err := h.store.ConfirmEnrollment(ctx, a.ID, cred, hashes, now); err != nil {
		if errors.Is(err, storage.ErrWrongState) {
			// The code was right, but the request moved on meanwhile.
			return h.givenBack(ctx, &st)
		}
		return pages.Internal("confirm enrollment", err)
	}
	h.metrics.Attempt("totp", "ok")
	// NIST SP 800-63B-4 §4.6: the binding of an authenticator is told to
	// the subscriber (op/mail, with this event's row).
	h.trail.Event(h.notify.With(ctx, a.UserID, mail.AuthenticatorAdded), "totp_enrolled", a.UserID, "", a.ClientID, "at login; 10 recovery codes issued; the sign-in continues at the TOTP step")
	if _, err := h.renewFlowCookie(ctx, w, a, st.flowSecret); err != nil {
		return errRenewed
	}
	text := strings.Join(codes, "\n") + "\n"
	h.pages.Render(w, http.StatusOK, "codes", pages.Data{
		Title: "title.codes", ClientName: h.clients.Name(ctx, a.ClientID), Codes: codes,
		DownloadURL: template.URL("data:text/plain;charset=utf-8," + url.PathEscape(text)), ContinueURL: URL(a.ID),
	})
	return nil
}

// recoveryPage shows the recovery-code form at the TOTP step.
func (h *Handler) recoveryPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	a, flowSecret, err := h.boundFlow(r, r.URL.Query().Get("id"), pages.MsgStartedElsewhere)
	if err != nil {
		return err
	}
	if a.Stage != storage.StagePasswordOK {
		return &pages.SeeOther{URL: URL(a.ID)}
	}
	if enrolled, err := h.hasTOTP(ctx, a.UserID); err != nil || !enrolled {
		// A recovery code stands in for a confirmed authenticator.
		return &pages.SeeOther{URL: URL(a.ID)}
	}
	h.show(w, h.recoveryForm(r, &a, flowSecret, http.StatusOK, ""))
	return nil
}

func (h *Handler) recoveryForm(r *http.Request, a *storage.AuthRequest, flowSecret string, status int, msg string) *pages.Form {
	return &pages.Form{Status: status, Page: "recovery", Data: pages.Data{
		Title: "title.recovery", ClientName: h.clients.Name(r.Context(), a.ClientID), ID: a.ID,
		CSRF: CSRFToken(flowSecret, a.ID), Error: msg, BackURL: URL(a.ID),
	}}
}

// recoveryStep accepts a recovery code instead of a TOTP code. A wrong code
// counts on the same guard counter as a wrong TOTP code (docs/THREAT-MODEL.md R-A8).
func (h *Handler) recoveryStep(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	form := secondForm{field: "recovery_code", kind: "recovery", badMsg: pages.MsgBadRecovery, normalize: totp.NormalizeRecoveryCode,
		form: func(a *storage.AuthRequest, secret string, status int, msg string) error {
			return h.recoveryForm(r, a, secret, status, msg)
		}}
	st, err := h.secondFactorForm(r, form)
	if err != nil {
		return err
	}
	a := &st.a
	now := h.now()
	left, err := h.store.CompleteRecovery(ctx, a.ID, a.UserID, totp.RecoveryHash(st.value), now, amrPasswordRecovery, h.cfg.ACR)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return h.rejected(ctx, &st, form, "failed", "recovery_code_failed", pages.MsgWrongRecovery)
	case errors.Is(err, storage.ErrWrongState):
		// The request moved on before the code was looked up.
		return h.notEvaluated(ctx, &st, "recovery_code_not_evaluated")
	case err != nil:
		return pages.Internal("complete recovery", err)
	}
	h.metrics.Attempt("recovery", "ok")
	h.trail.Event(h.notify.With(ctx, a.UserID, mail.RecoveryCodeUsed, left), "recovery_code_used", a.UserID, "", a.ClientID, "codes left: "+strconv.Itoa(left))
	if err := h.loginCompleted(ctx, w, r, &st, amrPasswordRecovery, now); err != nil {
		return err
	}
	h.pages.Render(w, http.StatusOK, "recovered", pages.Data{
		Title: "title.recovered", ClientName: h.clients.Name(ctx, a.ClientID), Left: left, ContinueURL: h.callbackURL(a.ID),
	})
	return nil
}
