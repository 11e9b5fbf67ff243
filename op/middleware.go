package op

import (
	"context"
	"fmt"
	"github.com/totp-idp/idp/op/httpx"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"time"
)

type ctxKey int

const reqInfoKey ctxKey = iota

// reqInfo is what the outer middleware learns about a request.
type reqInfo struct {
	id        string
	ip        netip.Addr
	ssoCookie string
	// bindFlow, set on /authorize, sets a new auth request's flow cookie
	// on the answer.
	bindFlow func(id, secret string)
	// callbackID is the auth request id whose browser binding the
	// callback checked; SaveAuthCode issues a code for no other.
	callbackID string
	// logoutConfirmed: the end_session request is the confirmation form,
	// with a valid token. logoutPending: the logout awaits it.
	logoutConfirmed, logoutPending bool
	// postLogoutURI is the post_logout_redirect_uri the logout asked for.
	postLogoutURI string
	// tokenClient is the client that authenticated on /oauth/token or
	// /revoke ("" when none did); codeVerifier the PKCE verifier sent.
	tokenClient, codeVerifier string
}

func infoFrom(ctx context.Context) *reqInfo {
	if ri, ok := ctx.Value(reqInfoKey).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

func ssoCookieFromContext(ctx context.Context) string { return infoFrom(ctx).ssoCookie }

// outer wraps every request: a request id, the client IP (docs/THREAT-MODEL.md rule 10), the
// SSO cookie for the storage callbacks, a body limit, baseline security
// headers, an access log line, and recovery from panics without leaking a
// stack trace to the client.
func (s *Server) outer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &reqInfo{id: randomID(9), ip: httpx.ClientIP(r, s.cfg.TrustedProxies)}
		if c, err := r.Cookie(s.ssoCookieName()); err == nil {
			ri.ssoCookie = c.Value
		}
		r = r.WithContext(context.WithValue(r.Context(), reqInfoKey, ri))
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		h := w.Header()
		h.Set("X-Request-Id", ri.id)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if s.cfg.secureCookies() {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "panic", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if sw.status == 0 {
					http.Error(sw, "internal error", http.StatusInternalServerError)
				}
			}
			// requestHandler adds the request id and address (logctx.go).
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "http", slog.String("method", r.Method),
				slog.String("path", r.URL.Path), slog.Int("status", sw.code()), slog.Duration("dur", time.Since(start)))
		}()
		next.ServeHTTP(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
