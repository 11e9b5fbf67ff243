package op

import (
	"net/http"
	"net/url"

	"github.com/totp-idp/idp/op/httpx"
)

// RFC 9207: every authorization response, success or error, carries the
// issuer identifier in iss, so that a client talking to several providers
// can tell which one answered (mix-up attacks). The library builds these
// responses (AuthResponseURL, AuthRequestError) without it;
// authorizationResponseIssuer adds it to the library's redirects, and
// login.Handler.AppErrorURL to ours.

// authorizationResponseIssuer adds iss to every redirect to a client that
// /authorize and the callback answer with. Those are the absolute
// Location URLs: the only other redirect there, to the login page, is a
// path.
func (s *Server) authorizationResponseIssuer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&issuerWriter{ResponseWriter: w, iss: s.cfg.Issuer}, r)
	})
}

type issuerWriter struct {
	http.ResponseWriter
	iss       string
	rewritten bool
}

func (w *issuerWriter) WriteHeader(code int) {
	if code >= 300 && code < 400 && !w.rewritten {
		if loc, err := url.Parse(w.Header().Get("Location")); err == nil && loc.Scheme != "" {
			w.Header().Set("Location", httpx.WithAuthzParams(loc, loc.Fragment != "", url.Values{"iss": {w.iss}}))
			w.rewritten = true
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write drops the body of a rewritten redirect: http.Redirect's short
// HTML names the URL without iss.
func (w *issuerWriter) Write(b []byte) (int, error) {
	if w.rewritten {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *issuerWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
