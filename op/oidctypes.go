package op

import (
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	zop "github.com/zitadel/oidc/v3/pkg/op"

	"github.com/totp-idp/idp/op/login"
	"github.com/totp-idp/idp/storage"
)

// authRequest adapts storage.AuthRequest to the library's op.AuthRequest.
type authRequest struct {
	a   storage.AuthRequest
	acr string
}

var _ zop.AuthRequest = (*authRequest)(nil)

func (r *authRequest) GetID() string { return r.a.ID }

// GetACR is set only once both factors are recorded.
func (r *authRequest) GetACR() string {
	if !r.a.Done() {
		return ""
	}
	if r.a.ACR != "" {
		return r.a.ACR
	}
	return r.acr
}
func (r *authRequest) GetAMR() []string {
	if !r.a.Done() {
		return nil
	}
	return r.a.AMR
}
func (r *authRequest) GetAudience() []string  { return []string{r.a.ClientID} }
func (r *authRequest) GetAuthTime() time.Time { return r.a.AuthTime }
func (r *authRequest) GetClientID() string    { return r.a.ClientID }
func (r *authRequest) GetNonce() string       { return r.a.Nonce }
func (r *authRequest) GetRedirectURI() string { return r.a.RedirectURI }
func (r *authRequest) GetScopes() []string    { return r.a.Scopes }
func (r *authRequest) GetState() string       { return r.a.State }
func (r *authRequest) GetSubject() string     { return r.a.UserID }
func (r *authRequest) Done() bool             { return r.a.Done() }
func (r *authRequest) GetResponseType() oidc.ResponseType {
	return oidc.ResponseType(r.a.ResponseType)
}
func (r *authRequest) GetResponseMode() oidc.ResponseMode {
	return oidc.ResponseMode(r.a.ResponseMode)
}

// GetCodeChallenge passes the method through unchanged so the library's
// verifier refuses anything but what was stored.
func (r *authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	if r.a.CodeChallenge == "" {
		return nil
	}
	return &oidc.CodeChallenge{Challenge: r.a.CodeChallenge, Method: oidc.CodeChallengeMethod(r.a.CodeChallengeMethod)}
}

// refreshRequest adapts a stored refresh token to op.RefreshTokenRequest.
type refreshRequest struct {
	t storage.RefreshToken
}

var _ zop.RefreshTokenRequest = (*refreshRequest)(nil)

func (r *refreshRequest) GetAMR() []string            { return r.t.AMR }
func (r *refreshRequest) GetAudience() []string       { return r.t.Audience }
func (r *refreshRequest) GetAuthTime() time.Time      { return r.t.AuthTime }
func (r *refreshRequest) GetClientID() string         { return r.t.ClientID }
func (r *refreshRequest) GetScopes() []string         { return r.t.Scopes }
func (r *refreshRequest) GetSubject() string          { return r.t.UserID }
func (r *refreshRequest) SetCurrentScopes(s []string) { r.t.Scopes = s }

// client adapts storage.Client to op.Client.
type client struct {
	c   storage.Client
	cfg *Config
}

var _ zop.Client = (*client)(nil)

func (c *client) GetID() string                    { return c.c.ID }
func (c *client) RedirectURIs() []string           { return c.c.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return c.c.PostLogoutRedirectURIs }

// ApplicationType: public clients are native apps (RFC 8252: loopback
// redirects on any port); confidential clients are web apps. Redirect URIs
// match exactly otherwise: no globs (HasRedirectGlobs is not implemented).
func (c *client) ApplicationType() zop.ApplicationType {
	if c.c.Public {
		return zop.ApplicationTypeNative
	}
	return zop.ApplicationTypeWeb
}
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.c.Public {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}
func (c *client) LoginURL(id string) string            { return login.URL(id) }
func (c *client) AccessTokenType() zop.AccessTokenType { return zop.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration       { return c.cfg.IDTokenLifetime }
func (c *client) DevMode() bool                        { return false }
func (c *client) IsScopeAllowed(string) bool           { return false }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// supportedScopes are the scopes whose claims we can actually return.
var supportedScopes = []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopeOfflineAccess}

// keepSupportedScopes drops scopes we do not serve (phone, address).
func keepSupportedScopes(s []string) []string {
	return slices.DeleteFunc(slices.Clone(s), func(x string) bool { return !slices.Contains(supportedScopes, x) })
}
