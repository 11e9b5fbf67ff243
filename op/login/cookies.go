package login

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/totp-idp/idp/op/guard"
	"github.com/totp-idp/idp/op/httpx"
	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/secret"
	"github.com/totp-idp/idp/storage"
)

// SSOCookieName is the SSO session cookie's name.
func (h *Handler) SSOCookieName() string { return h.cookies.Name("idp_session") }

// bindingCookieName is the cookie the SSO session is bound to: the session
// is known by both cookies together (docs/THREAT-MODEL.md R-W8), so the
// session cookie copied alone into another browser names no session.
func (h *Handler) bindingCookieName() string { return h.cookies.Name("idp_bind") }

// maxSSOCookie bounds each of the two values read (secret.New(32) is 43).
const maxSSOCookie = 64

// SSOCookie is the browser's SSO credential: the session cookie and its
// binding cookie joined, "" unless r carries both, well formed. Every use
// of the SSO session (its lookup, its form tokens, the replaced session at
// a new sign-in) goes through this value.
func (h *Handler) SSOCookie(r *http.Request) string { return h.ssoCookie(r) }

// ClearSSO removes both SSO cookies (logout, an ended session).
func (h *Handler) ClearSSO(w http.ResponseWriter) {
	h.cookies.Clear(w, h.SSOCookieName())
	h.cookies.Clear(w, h.bindingCookieName())
}

// CurrentSession is the browser's SSO session if it is usable without a
// new login (UsableSession with nothing asked of it) and its account may
// act: not disabled, and not waiting to choose a new password (the
// account page's sign-in; review of the account page, F2). Its use is
// recorded (the idle timeout counts from it).
func (h *Handler) CurrentSession(r *http.Request) (storage.Session, bool) {
	ctx := r.Context()
	sess, ok := h.UsableSession(ctx, h.ssoCookie(r), &storage.AuthRequest{})
	if !ok {
		return sess, false
	}
	u, err := h.store.UserByID(ctx, sess.UserID)
	if err != nil || !u.DisabledAt.IsZero() || u.MustChangePassword {
		return storage.Session{}, false
	}
	_ = h.store.TouchSession(ctx, sess.IDHash, h.now())
	return sess, true
}

// IdleOut reports whether sess has been idle past the idle timeout, so no
// longer usable though not yet expired (the account page leaves it out of
// the user's list; review of issue 12, A-F5).
func (h *Handler) IdleOut(sess storage.Session) bool {
	return h.now().Sub(sess.LastSeenAt) > h.cfg.SessionIdleTimeout
}

// ssoCookie is SSOCookie.
func (h *Handler) ssoCookie(r *http.Request) string {
	sess, err := r.Cookie(h.SSOCookieName())
	if err != nil || !ssoPart(sess.Value) {
		return ""
	}
	bind, err := r.Cookie(h.bindingCookieName())
	if err != nil || !ssoPart(bind.Value) {
		return ""
	}
	return joinSSO(sess.Value, bind.Value)
}

// ssoPart: one of the two values as this provider makes them (base64url,
// so the join below is unambiguous).
func ssoPart(v string) bool {
	if v == "" || len(v) > maxSSOCookie {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// joinSSO is the SSO credential of a session cookie and its binding.
func joinSSO(session, binding string) string { return session + "." + binding }

// flowCookieName is per auth request, so several sign-ins in several tabs
// each keep their own binding.
func (h *Handler) flowCookieName(authReqID string) string {
	short := authReqID
	if len(short) > 12 {
		short = short[:12]
	}
	return h.cookies.Name("idp_flow_" + short)
}

// BindFlow sets a new auth request's flow cookie, holding the secret its
// binding hash was made from, on the /authorize answer
// (docs/THREAT-MODEL.md rule 7).
func (h *Handler) BindFlow(w http.ResponseWriter, id, secret string) {
	h.cookies.Set(w, h.flowCookieName(id), secret, h.cfg.AuthRequestLifetime)
}

// BoundToBrowser reports whether r carries the cookie the auth request was
// bound to (docs/THREAT-MODEL.md rule 7).
func (h *Handler) BoundToBrowser(r *http.Request, a *storage.AuthRequest) bool {
	if len(a.BindingHash) == 0 {
		return false
	}
	c, err := r.Cookie(h.flowCookieName(a.ID))
	if err != nil || c.Value == "" {
		return false
	}
	return subtle.ConstantTimeCompare(secret.Hash(c.Value), a.BindingHash) == 1
}

// CSRFToken is the per-flow form token: an HMAC of the flow id under the
// browser-binding secret, so it is valid only with that browser's cookie.
func CSRFToken(flowSecret, authReqID string) string {
	m := hmac.New(sha256.New, []byte(flowSecret))
	m.Write([]byte("csrf:" + authReqID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (h *Handler) csrfValid(r *http.Request, a *storage.AuthRequest) bool {
	c, err := r.Cookie(h.flowCookieName(a.ID))
	if err != nil {
		return false
	}
	want := CSRFToken(c.Value, a.ID)
	return subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(want)) == 1
}

// UsableSession returns the SSO session of cookie (the browser's SSO
// cookie value) if it may satisfy the auth request without a new login:
// alive, not idle too long, within max_age (prompt=login arrives as max_age=0), and of the id_token_hint's
// subject when one was sent (OpenID Connect Core §3.1.2.1).
func (h *Handler) UsableSession(ctx context.Context, cookie string, a *storage.AuthRequest) (storage.Session, bool) {
	v := cookie
	if v == "" {
		return storage.Session{}, false
	}
	now := h.now()
	sess, err := h.store.SessionByHash(ctx, secret.Hash(v), now)
	if err != nil {
		return storage.Session{}, false
	}
	if now.Sub(sess.LastSeenAt) > h.cfg.SessionIdleTimeout {
		return storage.Session{}, false
	}
	if a.MaxAge != nil && now.Sub(sess.AuthTime) >= time.Duration(*a.MaxAge)*time.Second {
		return storage.Session{}, false
	}
	if a.HintSubject != "" && a.HintSubject != sess.UserID {
		return storage.Session{}, false
	}
	// The account is re-checked on every use: a session is worth nothing
	// once the authenticator it was opened with is gone or replaced
	// (reset-totp also ends sessions; this holds even if that failed).
	cred, err := h.store.TOTPByUser(ctx, sess.UserID)
	if err != nil || !cred.Confirmed || cred.CreatedAt.After(sess.AuthTime) {
		return storage.Session{}, false
	}
	return sess, true
}

// openSession starts an SSO session after a full login, links the auth
// request to it (its tokens end with it at logout) and sets its cookie.
// A sign-in an ending cancelled after its second factor gets the expired
// page with the way back to the application, not a server error.
func (h *Handler) openSession(w http.ResponseWriter, r *http.Request, a *storage.AuthRequest, now time.Time) error {
	err := h.createSession(w, r, a, now)
	if errors.Is(err, storage.ErrNotFound) {
		return h.LinkError(r, a.ID, err)
	}
	if errors.Is(err, storage.ErrWrongState) {
		// Another tab took the request further: its page says where.
		return &pages.Error{Status: http.StatusConflict, Msg: pages.MsgOtherBrowser, What: "open session: request moved on"}
	}
	if err != nil {
		return pages.Internal("open sso session", err)
	}
	return nil
}

func (h *Handler) createSession(w http.ResponseWriter, r *http.Request, a *storage.AuthRequest, now time.Time) error {
	ctx := r.Context()
	// Two values, two cookies: the session is known by both (R-W8).
	v, bind := secret.New(32), secret.New(32)
	sess := storage.Session{
		IDHash: secret.Hash(joinSSO(v, bind)), UserID: a.UserID, AuthTime: now, AMR: a.AMR, ACR: a.ACR,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(h.cfg.SessionLifetime),
		// Where it came from, for its owner's account page; both factors
		// were proven just now.
		ClientIP: httpx.RequestFrom(r.Context()).IPString(), UserAgent: guard.CleanUserAgent(r.UserAgent()), VerifiedAt: now,
	}
	if err := h.store.OpenSession(ctx, a.ID, sess); err != nil {
		return err
	}
	a.SessionHash = sess.IDHash
	// The previous session of this browser, if any, ends here; the same
	// user's tokens from it move to the new one, so this browser's logout
	// still reaches them.
	if old := h.ssoCookie(r); old != "" {
		if err := h.store.ReplaceSession(ctx, secret.Hash(old), sess.IDHash, now); err != nil {
			h.log.WarnContext(ctx, "replace previous session", "err", err)
		}
	}
	h.cookies.Set(w, h.SSOCookieName(), v, h.cfg.SessionLifetime)
	h.cookies.Set(w, h.bindingCookieName(), bind, h.cfg.SessionLifetime)
	return nil
}

// errRenewed: the flow's binding secret changed under a step (another tab
// of the browser completed it first); the step's answer says so.
var errRenewed = &pages.Error{Status: http.StatusForbidden, Msg: pages.MsgOtherBrowser, What: "renew flow cookie"}

// renewFlowCookie gives the flow a new binding secret after a completed
// step (ASVS session renewal, docs/THREAT-MODEL.md R-W2): the old cookie value
// stops working server-side at once.
func (h *Handler) renewFlowCookie(ctx context.Context, w http.ResponseWriter, a *storage.AuthRequest, oldSecret string) (string, error) {
	fresh := secret.New(32)
	if err := h.store.RebindAuthRequest(ctx, a.ID, secret.Hash(oldSecret), secret.Hash(fresh)); err != nil {
		return "", err
	}
	a.BindingHash = secret.Hash(fresh)
	h.cookies.Set(w, h.flowCookieName(a.ID), fresh, h.cfg.AuthRequestLifetime)
	return fresh, nil
}
