package op

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/totp-idp/idp/op/secret"
	"github.com/totp-idp/idp/storage"
)

// cookieName is base with the __Host- prefix under an https issuer
// (httpx.Cookies).
func (s *Server) cookieName(base string) string { return s.cookies.Name(base) }

func (s *Server) ssoCookieName() string { return s.cookieName("idp_session") }

// flowCookieName is per auth request, so several sign-ins in several tabs
// each keep their own binding.
func (s *Server) flowCookieName(authReqID string) string {
	short := authReqID
	if len(short) > 12 {
		short = short[:12]
	}
	return s.cookieName("idp_flow_" + short)
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	s.cookies.Set(w, name, value, maxAge)
}

func (s *Server) clearCookie(w http.ResponseWriter, name string) { s.cookies.Clear(w, name) }

// boundToBrowser reports whether r carries the cookie the auth request was
// bound to (docs/THREAT-MODEL.md rule 7).
func (s *Server) boundToBrowser(r *http.Request, a *storage.AuthRequest) bool {
	if len(a.BindingHash) == 0 {
		return false
	}
	c, err := r.Cookie(s.flowCookieName(a.ID))
	if err != nil || c.Value == "" {
		return false
	}
	return subtle.ConstantTimeCompare(secret.Hash(c.Value), a.BindingHash) == 1
}

// csrfToken is the per-flow form token: an HMAC of the flow id under the
// browser-binding secret, so it is valid only with that browser's cookie.
func csrfToken(flowSecret, authReqID string) string {
	m := hmac.New(sha256.New, []byte(flowSecret))
	m.Write([]byte("csrf:" + authReqID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Server) csrfValid(r *http.Request, a *storage.AuthRequest) bool {
	c, err := r.Cookie(s.flowCookieName(a.ID))
	if err != nil {
		return false
	}
	want := csrfToken(c.Value, a.ID)
	return subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(want)) == 1
}

// usableSession returns the browser's SSO session if it may satisfy the
// auth request without a new login: alive, not idle too long, within
// max_age (prompt=login arrives as max_age=0), and of the id_token_hint's
// subject when one was sent (OpenID Connect Core §3.1.2.1).
func (s *Server) usableSession(ctx context.Context, a *storage.AuthRequest) (storage.Session, bool) {
	v := ssoCookieFromContext(ctx)
	if v == "" {
		return storage.Session{}, false
	}
	now := s.cfg.now()
	sess, err := s.store.SessionByHash(ctx, secret.Hash(v), now)
	if err != nil {
		return storage.Session{}, false
	}
	if now.Sub(sess.LastSeenAt) > s.cfg.SessionIdleTimeout {
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
	cred, err := s.store.TOTPByUser(ctx, sess.UserID)
	if err != nil || !cred.Confirmed || cred.CreatedAt.After(sess.AuthTime) {
		return storage.Session{}, false
	}
	return sess, true
}

// openSession starts an SSO session after a full login, links the auth
// request to it (its tokens end with it at logout) and sets its cookie.
func (s *Server) openSession(ctx context.Context, w http.ResponseWriter, a *storage.AuthRequest, now time.Time) error {
	v := secret.New(32)
	sess := storage.Session{
		IDHash: secret.Hash(v), UserID: a.UserID, AuthTime: now, AMR: a.AMR, ACR: a.ACR,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(s.cfg.SessionLifetime),
	}
	if err := s.store.CreateSession(ctx, sess); err != nil {
		return err
	}
	if err := s.store.LinkSession(ctx, a.ID, sess.IDHash); err != nil {
		return err
	}
	a.SessionHash = sess.IDHash
	// The previous session of this browser, if any, ends here; the same
	// user's tokens from it move to the new one, so this browser's logout
	// still reaches them.
	if old := ssoCookieFromContext(ctx); old != "" {
		if err := s.store.ReplaceSession(ctx, secret.Hash(old), sess.IDHash, now); err != nil {
			s.log.WarnContext(ctx, "replace previous session", "err", err)
		}
	}
	s.setCookie(w, s.ssoCookieName(), v, s.cfg.SessionLifetime)
	return nil
}

// renewFlowCookie gives the flow a new binding secret after a completed
// step (ASVS session renewal, docs/THREAT-MODEL.md R-W2): the old cookie value
// stops working server-side at once.
func (s *Server) renewFlowCookie(ctx context.Context, w http.ResponseWriter, a *storage.AuthRequest, oldSecret string) (string, error) {
	fresh := secret.New(32)
	if err := s.store.RebindAuthRequest(ctx, a.ID, secret.Hash(oldSecret), secret.Hash(fresh)); err != nil {
		return "", err
	}
	a.BindingHash = secret.Hash(fresh)
	s.setCookie(w, s.flowCookieName(a.ID), fresh, s.cfg.AuthRequestLifetime)
	return fresh, nil
}
