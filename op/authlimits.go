package op

import (
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// Caps on what /authorize stores. Anyone may send an authorization
// request, and its parameters stay in the database for the request's
// lifetime, so each stored value is bounded (README, Protocol; OWASP ASVS
// 5.0 V2.2, input validation). The limits are far above what clients send.
const (
	maxStateBytes     = 2048
	maxNonceBytes     = 2048
	maxLoginHintBytes = 2048
	maxScopes         = 16
	maxACRValues      = 8
	maxACRValueBytes  = 256
	maxUILocales      = 8
	maxUILocaleBytes  = 64
	maxPrompts        = 5 // none, login, consent, select_account, create
	maxPromptBytes    = 32
	// s256ChallengeLen: BASE64URL(SHA-256(verifier)) without padding
	// (RFC 7636 §4.2) has exactly 43 characters.
	s256ChallengeLen = 43
)

// checkAuthRequestLimits refuses an authorization request whose stored
// parameters exceed the caps above. The answer is invalid_request, which
// the library redirects to the client's already validated redirect URI
// (RFC 6749 §4.1.2.1). An oversized state is not echoed back: it is the
// value being refused, and a redirect carrying up to 64 KiB of it would be
// cut off by the browser or a proxy instead of reaching the client.
func checkAuthRequestLimits(req *oidc.AuthRequest) error {
	refuse := func(format string, args ...any) error {
		return oidc.ErrInvalidRequest().WithDescription(format, args...)
	}
	if len(req.State) > maxStateBytes {
		req.State = ""
		return refuse("state is longer than %d bytes", maxStateBytes)
	}
	if len(req.Nonce) > maxNonceBytes {
		return refuse("nonce is longer than %d bytes", maxNonceBytes)
	}
	if len(req.LoginHint) > maxLoginHintBytes {
		return refuse("login_hint is longer than %d bytes", maxLoginHintBytes)
	}
	if len(req.Scopes) > maxScopes {
		return refuse("more than %d scope values", maxScopes)
	}
	if err := checkList("acr_values", req.ACRValues, maxACRValues, maxACRValueBytes); err != nil {
		return err
	}
	if err := checkList("prompt", req.Prompt, maxPrompts, maxPromptBytes); err != nil {
		return err
	}
	locales := make([]string, len(req.UILocales))
	for i, t := range req.UILocales {
		locales[i] = t.String()
	}
	if err := checkList("ui_locales", locales, maxUILocales, maxUILocaleBytes); err != nil {
		return err
	}
	if req.CodeChallenge != "" && !isS256Challenge(req.CodeChallenge) {
		return refuse("code_challenge must be the %d-character BASE64URL encoding of a SHA-256 digest (RFC 7636 §4.2)", s256ChallengeLen)
	}
	switch req.ResponseMode {
	case "", oidc.ResponseModeQuery, oidc.ResponseModeFragment:
	default:
		// Also form_post: the library's page posts a fixed set of fields,
		// without the iss that RFC 9207 requires in every response, and
		// submits itself with an inline script.
		return refuse("unsupported response_mode; use query or fragment")
	}
	return nil
}

func checkList(name string, values []string, maxValues, maxBytes int) error {
	if len(values) > maxValues {
		return oidc.ErrInvalidRequest().WithDescription("more than %d %s values", maxValues, name)
	}
	for _, v := range values {
		if len(v) > maxBytes {
			return oidc.ErrInvalidRequest().WithDescription("a %s value is longer than %d bytes", name, maxBytes)
		}
	}
	return nil
}

// isS256Challenge reports whether c has the shape of an S256 challenge.
func isS256Challenge(c string) bool {
	if len(c) != s256ChallengeLen {
		return false
	}
	for i := 0; i < len(c); i++ {
		switch b := c[i]; {
		case 'A' <= b && b <= 'Z', 'a' <= b && b <= 'z', '0' <= b && b <= '9', b == '-', b == '_':
		default:
			return false
		}
	}
	return true
}
