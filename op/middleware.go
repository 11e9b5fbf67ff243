package op

import (
	"context"
	"net/http"

	"github.com/totp-idp/idp/op/httpx"
)

type ctxKey int

const reqInfoKey ctxKey = iota

// reqInfo is the protocol state of a request: what the route wrappers
// learn and the storage callbacks (oidcstore.go) need, which the library
// does not pass them.
type reqInfo struct {
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
	// storeBusy: a store call answered storage.ErrBusy (busy, or the
	// database unreachable); the route answers 503 (unavailable).
	storeBusy bool
}

func infoFrom(ctx context.Context) *reqInfo {
	if ri, ok := ctx.Value(reqInfoKey).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

// outer wraps every request in the baseline (httpx.Baseline: request id,
// client IP, body limit, security headers, access log, panic recovery)
// and gives it the protocol state below, with the SSO cookie the storage
// callbacks read.
func (s *Server) outer(next http.Handler) http.Handler {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri := &reqInfo{}
		ri.ssoCookie = s.login.SSOCookie(r)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), reqInfoKey, ri)))
	})
	return httpx.Baseline{Log: s.log, TrustedProxies: s.cfg.TrustedProxies, HSTS: s.cfg.secureCookies(), MaxBody: maxBodyBytes}.Wrap(inner)
}
