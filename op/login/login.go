package login

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/totp-idp/idp/op/httpx"
	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/op/totp"
	"github.com/totp-idp/idp/storage"
)

// amrPasswordTOTP is the RFC 8176 amr of a password + TOTP login.
var amrPasswordTOTP = []string{"pwd", "otp", "mfa"}

// Mount registers the login UI, everything under Path, on mux, inside
// wrap (op's metrics). State-changing requests pass Go's cross-origin
// protection (Sec-Fetch-Site / Origin) and a per-flow token bound to the
// browser's flow cookie (docs/THREAT-MODEL.md R-W1).
func (h *Handler) Mount(mux *http.ServeMux, wrap func(http.Handler) http.Handler) {
	mux.Handle(Path, wrap(h.routes()))
}

func (h *Handler) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/{$}", h.pages.Handle(h.loginPage))
	mux.HandleFunc("POST /login/password", h.pages.Handle(h.passwordStep))
	mux.HandleFunc("POST /login/totp", h.pages.Handle(h.codeStep))
	mux.HandleFunc("GET /login/enroll/qr.png", h.pages.Handle(h.enrollQR))
	mux.HandleFunc("POST /login/enroll", h.pages.Handle(h.enrollStep))
	mux.HandleFunc("GET /login/recovery", h.pages.Handle(h.recoveryPage))
	mux.HandleFunc("POST /login/recovery", h.pages.Handle(h.recoveryStep))
	mux.HandleFunc("POST "+NewPasswordPath, h.pages.Handle(h.newPasswordStep))
	mux.HandleFunc("GET "+ForgotPath, h.pages.Handle(h.forgotPage))
	mux.HandleFunc("POST "+ForgotPath, h.pages.Handle(h.forgotStep))
	mux.HandleFunc("GET "+ResetPath, h.pages.Handle(h.resetPage))
	mux.HandleFunc("POST "+ResetPath, h.pages.Handle(h.resetStep))
	mux.HandleFunc("GET /login/static/style.css", h.pages.ServeCSS)
	mux.HandleFunc("GET /login/logged-out", func(w http.ResponseWriter, r *http.Request) {
		h.pages.Render(w, http.StatusOK, "loggedout", pages.Data{Title: "title.loggedout"})
	})
	mux.HandleFunc("/login/", func(w http.ResponseWriter, r *http.Request) {
		h.pages.Error(w, http.StatusNotFound, pages.MsgNotFound, "")
	})
	var next http.Handler = mux
	if h.ipLimit != nil {
		next = h.limitPosts(mux)
	}
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.pages.Error(w, http.StatusForbidden, pages.MsgForgery, "")
	}))
	return cop.Handler(next)
}

// limitPosts applies the optional per-address limit to login form posts.
func (h *Handler) limitPosts(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			ip := httpx.RequestFrom(r.Context()).IP
			if ok, wait := h.ipLimit.Allow(ip, h.now()); !ok {
				h.metrics.IPLimited()
				h.pages.Limited(w, wait, h.now())
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (h *Handler) callbackURL(id string) string {
	return h.cfg.Issuer + CallbackPath + "?id=" + url.QueryEscape(id)
}

// URL is the login page of auth request id.
func URL(id string) string { return Path + "?id=" + url.QueryEscape(id) }

// loginPage shows the step the auth request is at. The request was bound
// at /authorize to the browser that called it; any other browser gets a
// page saying so and nothing else (docs/THREAT-MODEL.md rule 7).
func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	a, flowSecret, err := h.boundFlow(r, r.URL.Query().Get("id"), pages.MsgStartedElsewhere)
	if err != nil {
		return err
	}
	switch a.Stage {
	case storage.StageDone:
		gate := h.AccountGate(r, &a)
		if gate != nil && !errors.Is(gate, ErrMustChange) {
			return gate // disabled: no session, no code
		}
		if len(a.SessionHash) == 0 {
			// The completing step stopped before it opened the SSO
			// session (a database error): open it now, in the browser
			// the request is bound to.
			if err := h.openSession(w, r, &a, h.now()); err != nil {
				return err
			}
		}
		if errors.Is(gate, ErrMustChange) {
			if slices.Contains(a.Prompt, oidc.PromptNone) {
				// The form is an interaction (OpenID Connect Core
				// §3.1.2.1); review of issue 12, F5.
				h.redirectError(w, r, &a, oidc.ErrInteractionRequired().WithDescription("the password must be changed"))
				return nil
			}
			u, err := h.store.UserByID(ctx, a.UserID)
			if err != nil {
				return pages.Internal("user for a new password", err)
			}
			h.show(w, h.newPasswordForm(r, &a, flowSecret, http.StatusOK, u.Username, ""))
			return nil
		}
		http.Redirect(w, r, h.callbackURL(a.ID), http.StatusSeeOther)
		return nil
	case storage.StageEnrolled:
		h.show(w, h.totpForm(r, &a, flowSecret, http.StatusOK, ""))
		return nil
	case storage.StagePasswordOK:
		enrolled, err := h.hasTOTP(ctx, a.UserID)
		if err != nil {
			return pages.Internal("totp lookup", err)
		}
		if !enrolled {
			// The flow may have passed the password step before the
			// enrollment window closed.
			if err := h.enrollmentClosedFor(r, &a); err != nil {
				return err
			}
			f, err := h.enrollForm(r, &a, flowSecret, http.StatusOK, "")
			if err != nil {
				return err
			}
			h.show(w, f)
			return nil
		}
		h.show(w, h.totpForm(r, &a, flowSecret, http.StatusOK, ""))
		return nil
	}
	// A live SSO session may satisfy the request without any page.
	if sess, ok := h.UsableSession(ctx, h.ssoCookie(r), &a); ok {
		err := h.store.CompleteFromSession(ctx, a.ID, sess, h.now())
		if err == nil {
			_ = h.store.TouchSession(ctx, sess.IDHash, h.now())
			h.trail.Event(ctx, "sso_login", sess.UserID, "", a.ClientID, "")
			http.Redirect(w, r, h.callbackURL(a.ID), http.StatusSeeOther)
			return nil
		}
		// The session ended or the request moved on meanwhile: sign in as
		// without a session. A database that fails is not that: its
		// answer is the service page (503 when busy), not a password form
		// or login_required.
		if !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrWrongState) {
			return err
		}
	}
	if slices.Contains(a.Prompt, oidc.PromptNone) {
		h.redirectError(w, r, &a, oidc.ErrLoginRequired())
		return nil
	}
	h.show(w, h.passwordForm(r, &a, flowSecret, http.StatusOK, a.LoginHint, ""))
	return nil
}

// redirectError sends an OAuth error to the client's (already validated)
// redirect URI.
func (h *Handler) redirectError(w http.ResponseWriter, r *http.Request, a *storage.AuthRequest, e *oidc.Error) {
	http.Redirect(w, r, h.AppErrorURL(a, string(e.ErrorType), e.Description), http.StatusFound)
}

// The forms of a flow: each is the page to show (show) or, with a message,
// the answer to a bad or wrong value (returned as the handler's error).

func (h *Handler) passwordForm(r *http.Request, a *storage.AuthRequest, flowSecret string, status int, username, msg string) *pages.Form {
	return &pages.Form{Status: status, Page: "password", Data: pages.Data{
		Title: "title.signin", ClientName: h.clients.Name(r.Context(), a.ClientID), ID: a.ID,
		CSRF: CSRFToken(flowSecret, a.ID), Username: username, Error: msg, Forgot: h.notify != nil,
	}}
}

func (h *Handler) totpForm(r *http.Request, a *storage.AuthRequest, flowSecret string, status int, msg string) *pages.Form {
	return &pages.Form{Status: status, Page: "totp", Data: pages.Data{
		Title: "title.code", ClientName: h.clients.Name(r.Context(), a.ClientID), ID: a.ID,
		CSRF: CSRFToken(flowSecret, a.ID), Error: msg, AfterEnroll: a.Stage == storage.StageEnrolled,
	}}
}

// show answers with form f.
func (h *Handler) show(w http.ResponseWriter, f *pages.Form) {
	h.pages.Render(w, f.Status, f.Page, f.Data)
}

// boundFlow reads auth request id and checks that r comes from the
// browser it was bound to at /authorize (docs/THREAT-MODEL.md rule 7). It
// returns the request and the flow cookie's secret, or answers r itself: a
// link problem page, or 403 with a binding_mismatch audit row. Every page
// and form of a flow loads it here, so none can skip the check or its
// audit. refusal is the message of the 403: a page says where the
// sign-in was started, a form also that it may have moved on.
func (h *Handler) boundFlow(r *http.Request, id, refusal string) (storage.AuthRequest, string, error) {
	a, err := h.store.AuthRequestByID(r.Context(), id, h.now())
	if err != nil {
		return a, "", h.LinkError(r, id, err)
	}
	if !h.BoundToBrowser(r, &a) {
		h.trail.Event(r.Context(), "binding_mismatch", a.UserID, "", a.ClientID, r.URL.Path)
		return a, "", &pages.Error{Status: http.StatusForbidden, Msg: refusal, What: "binding mismatch"}
	}
	c, _ := r.Cookie(h.flowCookieName(a.ID))
	return a, c.Value, nil
}

// loadFlow is boundFlow for a posted form, which must also carry the
// flow's form token (R-W1).
func (h *Handler) loadFlow(r *http.Request) (storage.AuthRequest, string, error) {
	if err := r.ParseForm(); err != nil {
		return storage.AuthRequest{}, "", &pages.Error{Status: http.StatusBadRequest, Msg: pages.MsgUnreadable, What: "unreadable form"}
	}
	a, flowSecret, err := h.boundFlow(r, r.PostFormValue("id"), pages.MsgOtherBrowser)
	if err != nil {
		return a, "", err
	}
	if !h.csrfValid(r, &a) {
		h.trail.Event(r.Context(), "csrf_rejected", a.UserID, "", a.ClientID, r.URL.Path)
		return a, "", &pages.Error{Status: http.StatusForbidden, Msg: pages.MsgForgery, What: "form token", Back: URL(a.ID)}
	}
	return a, flowSecret, nil
}

// passwordStep verifies the first factor. It never completes a login: on
// success the request moves to password_ok and the browser to the TOTP
// page (docs/THREAT-MODEL.md rule 7).
func (h *Handler) passwordStep(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	a, flowSecret, err := h.loadFlow(r)
	if err != nil {
		return err
	}
	if a.Stage == storage.StageDone {
		return &pages.SeeOther{URL: URL(a.ID)}
	}
	rawUser := r.PostFormValue("username")
	typed := r.PostFormValue("password")
	username, err := storage.CanonicalUsername(rawUser)
	if err != nil {
		return h.passwordForm(r, &a, flowSecret, http.StatusBadRequest, "", pages.MsgNoUsername)
	}
	if len(typed) > password.MaxBytes {
		return h.passwordForm(r, &a, flowSecret, http.StatusBadRequest, rawUser, pages.MsgLongPassword)
	}
	// The hashing slot before the claim: a claim is counted before its
	// answer is known, and a right password gives it back only afterwards
	// (storage.LockPolicy.Succeeded). Waiting for hashing capacity first
	// keeps that window to one hash, however long the queue an attacker
	// builds with made-up names (docs/THREAT-MODEL.md rule 3).
	queued := time.Now()
	slot, err := h.hasher.Reserve(ctx)
	h.metrics.HashWait(time.Since(queued))
	if err != nil {
		h.pages.Error(w, http.StatusServiceUnavailable, pages.MsgBusy, URL(a.ID))
		return nil
	}
	defer slot.Release()
	u, err := h.store.UserByUsername(ctx, username)
	if errors.Is(err, storage.ErrNotFound) {
		// An unknown name is counted and locked like an account (docs/THREAT-MODEL.md R-W5),
		// costs the same hash and gets the same answer (docs/THREAT-MODEL.md rule 11).
		claim, key, err := h.guard.ClaimUnknown(ctx, username, a.ClientID)
		if err != nil {
			return pages.Internal("unknown user claim", err)
		}
		if !claim.Allowed {
			h.metrics.Attempt("password", "locked")
			return h.locked(&a, claim)
		}
		if _, err := slot.Verify("", typed); err != nil {
			return pages.Internal("password verify", err)
		}
		slot.Release()
		h.metrics.Attempt("password", "failed")
		h.guard.Failed(ctx, claim, "password_failed", "", "", a.ClientID, storage.FactorPassword, key, "counter=shared")
		return h.passwordForm(r, &a, flowSecret, http.StatusUnauthorized, rawUser, pages.MsgWrongPassword)
	}
	if err != nil {
		return pages.Internal("user lookup", err)
	}
	claim, counter, err := h.guard.ClaimPassword(ctx, w, r, u, a.ClientID)
	if err != nil {
		return pages.Internal("password claim", err)
	}
	if !claim.Allowed {
		h.metrics.Attempt("password", "locked")
		return h.locked(&a, claim)
	}
	match, err := slot.Verify(u.PasswordHash, typed)
	slot.Release()
	if err != nil {
		return pages.Internal("password verify", err)
	}
	if !match {
		h.metrics.Attempt("password", "failed")
		h.guard.Failed(ctx, claim, "password_failed", u.ID, u.Username, a.ClientID, storage.FactorPassword, "", counter.Note())
		return h.passwordForm(r, &a, flowSecret, http.StatusUnauthorized, rawUser, pages.MsgWrongPassword)
	}
	now := h.now()
	if err := h.guard.PasswordSucceeded(ctx, u.ID, claim, counter); err != nil {
		return pages.Internal("password success", err)
	}
	// An account waiting for enrollment is password-only: that is allowed
	// only within Config.EnrollWithin of it being put in that state.
	enrolled, err := h.hasTOTP(ctx, u.ID)
	if err != nil {
		return pages.Internal("totp lookup", err)
	}
	if !enrolled {
		if err := h.enrollmentClosedAt(ctx, &a, u); err != nil {
			return err
		}
	}
	if err := h.store.PasswordVerified(ctx, a.ID, u.ID, now); err != nil {
		return &pages.SeeOther{URL: URL(a.ID)}
	}
	h.metrics.Attempt("password", "ok")
	h.trail.Event(ctx, "password_ok", u.ID, u.Username, a.ClientID, "")
	if _, err := h.renewFlowCookie(ctx, w, &a, flowSecret); err != nil {
		return errRenewed
	}
	if h.hasher.NeedsRehash(u.PasswordHash) {
		if hash, err := h.hasher.Hash(ctx, typed); err == nil {
			if err := h.store.SetPasswordHash(ctx, u.ID, hash); err != nil {
				h.log.WarnContext(ctx, "password rehash", "err", err)
			}
		}
	}
	http.Redirect(w, r, URL(a.ID), http.StatusSeeOther)
	return nil
}

// codeStep verifies the second factor. The account is the one the password
// step recorded server-side, never a form field (docs/THREAT-MODEL.md R-T5). Only here does an
// auth request become done.
func (h *Handler) codeStep(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	form := secondForm{field: "code", kind: "totp", badMsg: pages.MsgBadCode, normalize: totp.Normalize, afterEnrollment: true,
		form: func(a *storage.AuthRequest, secret string, status int, msg string) error {
			return h.totpForm(r, a, secret, status, msg)
		},
		secretFor: func(ctx context.Context, a *storage.AuthRequest) ([]byte, error) {
			cred, err := h.store.TOTPByUser(ctx, a.UserID)
			if errors.Is(err, storage.ErrNotFound) || err == nil && !cred.Confirmed {
				// Reset by an operator since the check: the login page
				// enrolls.
				return nil, &pages.SeeOther{URL: URL(a.ID)}
			}
			if err != nil {
				return nil, pages.Internal("totp lookup", err)
			}
			secret, err := h.sealer.Open(seal.AADTOTP(a.UserID), cred.Secret)
			if err != nil {
				return nil, pages.Internal("open totp secret", err)
			}
			return secret, nil
		}}
	st, err := h.secondFactorForm(r, form)
	if err != nil {
		return err
	}
	a := &st.a
	now := h.now()
	step, err := h.checkCode(ctx, &st, st.secret, now, "totp_failed", form)
	if err != nil {
		return err
	}
	err = h.store.CompleteTOTP(ctx, a.ID, a.UserID, step, now, amrPasswordTOTP, h.cfg.ACR)
	switch {
	case errors.Is(err, storage.ErrReplay):
		// RFC 6238 §5.2: a code is accepted once; the claim already
		// counted this attempt as a failure.
		return h.rejected(ctx, &st, form, "replay", "totp_replay", pages.MsgWrongCode)
	case errors.Is(err, storage.ErrWrongState):
		// The code was right, but the request moved on meanwhile.
		return h.givenBack(ctx, &st)
	case errors.Is(err, storage.ErrNotFound):
		// The authenticator was removed since its secret was read.
		return h.notEvaluated(ctx, &st, "totp_authenticator_gone")
	case err != nil:
		return pages.Internal("complete totp", err)
	}
	h.metrics.Attempt("totp", "ok")
	h.trail.Event(ctx, "totp_ok", a.UserID, "", a.ClientID, "")
	if err := h.loginCompleted(ctx, w, r, &st, amrPasswordTOTP, now); err != nil {
		return err
	}
	http.Redirect(w, r, h.callbackURL(a.ID), http.StatusSeeOther)
	return nil
}
