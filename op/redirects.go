package op

import (
	"context"

	"github.com/totp-idp/idp/op/redirect"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	zop "github.com/zitadel/oidc/v3/pkg/op"
)

// ValidateAuthRequest makes the provider an op.AuthorizeValidator, which
// replaces the library's validation of /authorize. It is the library's
// validation (ValidateAuthRequestClient) with one change: a public
// client's redirect URI is matched here, by RFC 8252's rules, and the
// library then sees only the URI that matched. The library's own native
// matching ignores scheme, loopback host, port, user info and fragment
// (auth_request.go, matchesLoopbackRedirect).
func (p *provider) ValidateAuthRequest(ctx context.Context, req *oidc.AuthRequest, st zop.Storage, verifier *zop.IDTokenHintVerifier) (string, error) {
	c, err := st.GetClientByClientID(ctx, req.ClientID)
	if err != nil {
		// Never redirect for an unknown client (RFC 6749 §4.1.2.1).
		return "", oidc.ErrInvalidRequestRedirectURI().WithDescription("unable to retrieve client by id").WithParent(err)
	}
	if c.ApplicationType() == zop.ApplicationTypeNative {
		if !redirect.NativeMatches(c.RedirectURIs(), req.RedirectURI) {
			return "", oidc.ErrInvalidRequestRedirectURI().WithDescription("The requested redirect_uri is not registered for this client.")
		}
		c = matchedRedirect{Client: c, uri: req.RedirectURI}
	}
	return zop.ValidateAuthRequestClient(ctx, req, c, verifier)
}

// matchedRedirect is a client whose only redirect URI is the one that
// matched the request.
type matchedRedirect struct {
	zop.Client
	uri string
}

func (m matchedRedirect) RedirectURIs() []string { return []string{m.uri} }
