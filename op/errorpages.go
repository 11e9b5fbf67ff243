package op

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/totp-idp/idp/op/pages"
)

// htmlErrors turns the protocol library's error answers on the
// browser-facing endpoints (an unknown client, an unregistered redirect
// URI: errors that must not be redirected, RFC 6749 §4.1.2.1) into the
// login UI's error page, with its security headers. The message is chosen
// from the library's text (TestLibraryErrorTexts pins the texts read).
func (s *Server) htmlErrors(next http.Handler) http.Handler {
	return s.errorPages(next, func(text string) string {
		switch {
		case strings.Contains(text, "redirect_uri") || strings.Contains(text, "redirect uri"):
			return pages.MsgBadRedirect
		case strings.Contains(text, "client"):
			return pages.MsgUnknownClient
		}
		return pages.MsgBadRequest
	})
}

// htmlErrorsAs is htmlErrors with one message for every error (logout).
func (s *Server) htmlErrorsAs(msg string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return s.errorPages(next, func(string) string { return msg })
	}
}

func (s *Server) errorPages(next http.Handler, message func(lowerText string) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &errorCapture{ResponseWriter: w}
		next.ServeHTTP(c, r)
		if !c.captured {
			return
		}
		detail := strings.TrimSpace(c.body.String())
		s.log.InfoContext(r.Context(), "protocol error page", "path", r.URL.Path, "status", c.status, "detail", detail)
		s.pages.Error(w, c.status, message(strings.ToLower(detail)), "")
	})
}

// errorCapture holds back an error answer of the library (plain text, or
// its JSON error object) so that htmlErrors can replace it.
type errorCapture struct {
	http.ResponseWriter
	captured bool
	status   int
	body     bytes.Buffer
}

func (c *errorCapture) WriteHeader(code int) {
	ct := c.Header().Get("Content-Type")
	if code >= 400 && (strings.HasPrefix(ct, "text/plain") || strings.HasPrefix(ct, "application/json")) {
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
