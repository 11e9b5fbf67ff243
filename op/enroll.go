package op

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

	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/op/totp"
	"github.com/totp-idp/idp/storage"
)

// amrPasswordRecovery is the amr of a login finished with a recovery code:
// a password and a look-up secret, two factors, but no OTP device.
var amrPasswordRecovery = []string{"pwd", "rc", "mfa"}

// hasTOTP reports whether the user has a confirmed authenticator.
func (s *Server) hasTOTP(ctx context.Context, userID string) (bool, error) {
	c, err := s.store.TOTPByUser(ctx, userID)
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
func (s *Server) pendingSecret(ctx context.Context, a *storage.AuthRequest) ([]byte, error) {
	if a.PendingTOTP != nil {
		if secret, err := s.cfg.Sealer.Open(seal.AADPendingTOTP(a.ID), a.PendingTOTP); err == nil {
			return secret, nil
		}
	}
	secret, err := totp.NewSecret()
	if err != nil {
		return nil, err
	}
	sealed, err := s.cfg.Sealer.Seal(ctx, seal.AADPendingTOTP(a.ID), secret)
	if err != nil {
		return nil, err
	}
	// replace only a value that did not open (sealed under a lost key).
	replace := a.PendingTOTP != nil
	err = s.store.SetPendingTOTP(ctx, a.ID, a.UserID, sealed, replace, s.cfg.now())
	if errors.Is(err, storage.ErrWrongState) && !replace {
		// Another tab was first: use its secret.
		fresh, err := s.store.AuthRequestByID(ctx, a.ID, s.cfg.now())
		if err != nil || fresh.PendingTOTP == nil {
			return nil, storage.ErrWrongState
		}
		return s.cfg.Sealer.Open(seal.AADPendingTOTP(a.ID), fresh.PendingTOTP)
	}
	if err != nil {
		return nil, err
	}
	a.PendingTOTP = sealed
	return secret, nil
}

func (s *Server) totpKey(ctx context.Context, userID string, secret []byte) (*otp.Key, error) {
	u, err := s.store.UserByID(ctx, userID)
	if err != nil {
		return nil, err
	}
	return totp.Key(s.cfg.ProductName, u.Username, secret)
}

func groupSecret(b32 string) string {
	var parts []string
	for i := 0; i < len(b32); i += 4 {
		parts = append(parts, b32[i:min(i+4, len(b32))])
	}
	return strings.Join(parts, " ")
}

// renderEnroll shows the enrollment page: only reachable in password_ok,
// that is after a correct password in this very flow (docs/THREAT-MODEL.md R-T4).
func (s *Server) renderEnroll(w http.ResponseWriter, r *http.Request, a *storage.AuthRequest, flowSecret string, status int, msg string) {
	ctx := r.Context()
	secret, err := s.pendingSecret(ctx, a)
	if err != nil {
		s.pages.Fail(w, r, pages.Internal("pending totp", err))
		return
	}
	key, err := s.totpKey(ctx, a.UserID, secret)
	if err != nil {
		s.pages.Fail(w, r, pages.Internal("totp key", err))
		return
	}
	s.pages.Render(w, status, "enroll", pages.Data{
		Title: "title.enroll", ClientName: s.clientName(ctx, a.ClientID), ID: a.ID,
		CSRF: csrfToken(flowSecret, a.ID), Error: msg,
		QRURL: "/login/enroll/qr.png?id=" + url.QueryEscape(a.ID), Secret: groupSecret(key.Secret()),
	})
}

// enrollQR serves the QR code as a PNG rendered here: no external service
// ever sees the secret.
func (s *Server) enrollQR(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a, err := s.store.AuthRequestByID(ctx, r.URL.Query().Get("id"), s.cfg.now())
	if err != nil || !s.boundToBrowser(r, &a) || a.Stage != storage.StagePasswordOK || a.PendingTOTP == nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if u, err := s.store.UserByID(ctx, a.UserID); err != nil || s.enrollmentClosed(u, s.cfg.now()) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	secret, err := s.cfg.Sealer.Open(seal.AADPendingTOTP(a.ID), a.PendingTOTP)
	if err != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	key, err := s.totpKey(ctx, a.UserID, secret)
	if err != nil {
		s.pages.Fail(w, r, pages.Internal("totp key", err))
		return
	}
	img, err := key.Image(200, 200)
	if err != nil {
		s.pages.Fail(w, r, pages.Internal("qr image", err))
		return
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		s.pages.Fail(w, r, pages.Internal("qr png", err))
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

// enrollStep confirms the pending secret with a code from it. Attempts go
// through the guard like any TOTP attempt; the code's step is consumed.
// Confirming does not finish the login: the authenticator was bound on the
// strength of the password alone, so the request moves to enrolled and
// completes only through the TOTP step, with a code of a later time step
// (docs/THREAT-MODEL.md rule 7).
func (s *Server) enrollStep(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	render := func(a *storage.AuthRequest, secret string, status int, msg string) {
		s.renderEnroll(w, r, a, secret, status, msg)
	}
	st, ok := s.secondFactorForm(w, r, secondForm{field: "code", kind: "totp", badMsg: pages.MsgBadCode,
		normalize: totp.Normalize, render: render, enrolls: true})
	if !ok {
		return nil
	}
	a := &st.a
	if a.PendingTOTP == nil {
		http.Redirect(w, r, s.loginURL(a.ID), http.StatusSeeOther)
		return nil
	}
	secret, err := s.cfg.Sealer.Open(seal.AADPendingTOTP(a.ID), a.PendingTOTP)
	if err != nil {
		return pages.Internal("open pending totp", err)
	}
	now := s.cfg.now()
	step, match := s.checkCode(ctx, &st, secret, now, "enrollment_failed", render)
	if !match {
		return nil
	}
	sealed, err := s.cfg.Sealer.Seal(ctx, seal.AADTOTP(a.UserID), secret)
	if err != nil {
		return pages.Internal("seal totp", err)
	}
	codes, hashes, err := newRecoveryCodes()
	if err != nil {
		return pages.Internal("recovery codes", err)
	}
	cred := storage.TOTPCredential{UserID: a.UserID, Secret: sealed, Confirmed: true, LastStep: step, CreatedAt: now}
	if err := s.store.ConfirmEnrollment(ctx, a.ID, cred, hashes, now); err != nil {
		if errors.Is(err, storage.ErrWrongState) {
			http.Redirect(w, r, s.loginURL(a.ID), http.StatusSeeOther)
			return nil
		}
		return pages.Internal("confirm enrollment", err)
	}
	s.metrics.Attempt("totp", "ok")
	s.trail.Event(ctx, "totp_enrolled", a.UserID, "", a.ClientID, "at login; 10 recovery codes issued; the sign-in continues at the TOTP step")
	if _, err := s.renewFlowCookie(ctx, w, a, st.flowSecret); err != nil {
		s.pages.Error(w, http.StatusForbidden, pages.MsgOtherBrowser, "")
		return nil
	}
	text := strings.Join(codes, "\n") + "\n"
	s.pages.Render(w, http.StatusOK, "codes", pages.Data{
		Title: "title.codes", ClientName: s.clientName(ctx, a.ClientID), Codes: codes,
		DownloadURL: template.URL("data:text/plain;charset=utf-8," + url.PathEscape(text)), ContinueURL: s.loginURL(a.ID),
	})
	return nil
}

// recoveryPage shows the recovery-code form at the TOTP step.
func (s *Server) recoveryPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	a, flowSecret, err := s.boundFlow(r, r.URL.Query().Get("id"), pages.MsgStartedElsewhere)
	if err != nil {
		return err
	}
	if a.Stage != storage.StagePasswordOK {
		http.Redirect(w, r, s.loginURL(a.ID), http.StatusSeeOther)
		return nil
	}
	if enrolled, err := s.hasTOTP(ctx, a.UserID); err != nil || !enrolled {
		// A recovery code stands in for a confirmed authenticator.
		http.Redirect(w, r, s.loginURL(a.ID), http.StatusSeeOther)
		return nil
	}
	s.renderRecovery(w, r, &a, flowSecret, http.StatusOK, "")
	return nil
}

func (s *Server) renderRecovery(w http.ResponseWriter, r *http.Request, a *storage.AuthRequest, flowSecret string, status int, msg string) {
	s.pages.Render(w, status, "recovery", pages.Data{
		Title: "title.recovery", ClientName: s.clientName(r.Context(), a.ClientID), ID: a.ID,
		CSRF: csrfToken(flowSecret, a.ID), Error: msg, BackURL: s.loginURL(a.ID),
	})
}

// recoveryStep accepts a recovery code instead of a TOTP code. A wrong code
// counts on the same guard counter as a wrong TOTP code (docs/THREAT-MODEL.md R-A8).
func (s *Server) recoveryStep(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	st, ok := s.secondFactorForm(w, r, secondForm{field: "recovery_code", kind: "recovery", badMsg: pages.MsgBadRecovery,
		normalize: normalizeRecoveryCode, render: func(a *storage.AuthRequest, secret string, status int, msg string) {
			s.renderRecovery(w, r, a, secret, status, msg)
		}})
	if !ok {
		return nil
	}
	a := &st.a
	now := s.cfg.now()
	left, err := s.store.CompleteRecovery(ctx, a.ID, a.UserID, recoveryHash(st.value), now, amrPasswordRecovery, s.cfg.ACR)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		s.metrics.Attempt("recovery", "failed")
		s.guard.Failed(ctx, st.claim, "recovery_code_failed", a.UserID, "", a.ClientID, storage.FactorTOTP, "", "")
		s.renderRecovery(w, r, a, st.flowSecret, http.StatusUnauthorized, pages.MsgWrongRecovery)
		return nil
	case errors.Is(err, storage.ErrWrongState):
		http.Redirect(w, r, s.loginURL(a.ID), http.StatusSeeOther)
		return nil
	case err != nil:
		return pages.Internal("complete recovery", err)
	}
	s.metrics.Attempt("recovery", "ok")
	s.trail.Event(ctx, "recovery_code_used", a.UserID, "", a.ClientID, "codes left: "+strconv.Itoa(left))
	if err := s.loginCompleted(ctx, w, r, &st, amrPasswordRecovery, now); err != nil {
		return err
	}
	s.pages.Render(w, http.StatusOK, "recovered", pages.Data{
		Title: "title.recovered", ClientName: s.clientName(ctx, a.ClientID), Left: left, ContinueURL: s.callbackURL(a.ID),
	})
	return nil
}
