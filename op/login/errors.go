package login

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/totp-idp/idp/op/httpx"
	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// LinkError is the answer to a login URL whose auth request lookup failed
// with err. A request the store does not have (storage.ErrNotFound) is an
// unusable link: for an expired one the page says so and offers the way
// back to the application, its redirect URI with error=access_denied,
// which the application can answer by starting a new sign-in. Any other
// error is the database's (503 while it is busy or unreachable), never
// "invalid link": the sign-in survives the outage.
func (h *Handler) LinkError(r *http.Request, id string, err error) error {
	if !errors.Is(err, storage.ErrNotFound) {
		return pages.Internal("auth request lookup", err)
	}
	a, err := h.store.AuthRequestByID(r.Context(), id, time.Time{})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return pages.Internal("auth request lookup", err)
	}
	if err != nil || a.ExpiresAt.After(h.now()) {
		return &pages.Error{Status: http.StatusBadRequest, Msg: pages.MsgInvalidLink, What: "invalid sign-in link"}
	}
	return &pages.Error{Status: http.StatusBadRequest, Msg: pages.MsgExpired, What: "expired sign-in link",
		Back: h.AppErrorURL(&a, "access_denied", "the sign-in link expired"), Client: h.clients.Name(r.Context(), a.ClientID)}
}

// AppErrorURL is the client's (registered, already validated) redirect URI
// carrying an OAuth error, the request's state (RFC 6749 §4.1.2.1) and the
// issuer (RFC 9207), in the fragment if the request asked for it: the way
// back to the application, which can start a new sign-in.
func (h *Handler) AppErrorURL(a *storage.AuthRequest, code, description string) string {
	q := url.Values{"error": {code}, "iss": {h.cfg.Issuer}}
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
	return httpx.WithAuthzParams(u, a.ResponseMode == string(oidc.ResponseModeFragment), q)
}
