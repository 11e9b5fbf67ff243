package op

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/storage"
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

// linkProblem answers a login URL whose auth request is unusable. For an
// expired request it says so and offers the way back to the application:
// its redirect URI with error=access_denied, which the application can
// answer by starting a new sign-in.
func (s *Server) linkProblem(w http.ResponseWriter, r *http.Request, id string) {
	s.pages.Fail(w, r, s.linkError(r, id))
}

// linkError is linkProblem's page as a handler's error.
func (s *Server) linkError(r *http.Request, id string) error {
	a, err := s.store.AuthRequestByID(r.Context(), id, time.Time{})
	if err != nil || a.ExpiresAt.After(s.cfg.now()) {
		return &pages.Error{Status: http.StatusBadRequest, Msg: pages.MsgInvalidLink, What: "invalid sign-in link"}
	}
	return &pages.Error{Status: http.StatusBadRequest, Msg: pages.MsgExpired, What: "expired sign-in link",
		Back: s.appErrorURL(&a, "access_denied", "the sign-in link expired"), Client: s.clientName(r.Context(), a.ClientID)}
}

// appErrorURL is the client's (registered, already validated) redirect URI
// carrying an OAuth error, the request's state (RFC 6749 §4.1.2.1) and the
// issuer (RFC 9207), in the fragment if the request asked for it: the way
// back to the application, which can start a new sign-in.
func (s *Server) appErrorURL(a *storage.AuthRequest, code, description string) string {
	q := url.Values{"error": {code}, "iss": {s.cfg.Issuer}}
	if description != "" {
		q.Set("error_description", description)
	}
	if a.State != "" {
		q.Set("state", a.State)
	}
	u, err := url.Parse(a.RedirectURI)
	if err != nil {
		return ""
	}
	return withAuthzParams(u, a.ResponseMode == string(oidc.ResponseModeFragment), q)
}
