package op

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/totp-idp/idp/op/pages"
)

// htmlErrors turns the protocol library's plain-text error answers on the
// browser-facing endpoints (an unknown client, an unregistered redirect
// URI: errors that must not be redirected, RFC 6749 §4.1.2.1) into the
// login UI's error page, with its security headers.
func (s *Server) htmlErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &errorCapture{ResponseWriter: w}
		next.ServeHTTP(c, r)
		if !c.captured {
			return
		}
		text := strings.ToLower(c.body.String())
		msg := pages.MsgBadRequest
		switch {
		case strings.Contains(text, "redirect_uri") || strings.Contains(text, "redirect uri"):
			msg = pages.MsgBadRedirect
		case strings.Contains(text, "client"):
			msg = pages.MsgUnknownClient
		}
		s.log.InfoContext(r.Context(), "protocol error page", "path", r.URL.Path, "status", c.status, "detail", strings.TrimSpace(c.body.String()))
		s.pages.Error(w, c.status, msg, "")
	})
}

// errorCapture holds back a plain-text error answer so that htmlErrors can
// replace it.
type errorCapture struct {
	http.ResponseWriter
	captured bool
	status   int
	body     bytes.Buffer
}

func (c *errorCapture) WriteHeader(code int) {
	if code >= 400 && strings.HasPrefix(c.Header().Get("Content-Type"), "text/plain") {
		c.captured, c.status = true, code
		return
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *errorCapture) Write(b []byte) (int, error) {
	if c.captured {
		return c.body.Write(b)
	}
	return c.ResponseWriter.Write(b)
}

func (c *errorCapture) Unwrap() http.ResponseWriter { return c.ResponseWriter }
