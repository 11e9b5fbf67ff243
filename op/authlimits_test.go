package op

import (
	"errors"
	"strings"
	"testing"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/text/language"
)

func TestAuthRequestLimits(t *testing.T) {
	challenge := strings.Repeat("A", 42) + "_"
	valid := func() *oidc.AuthRequest {
		return &oidc.AuthRequest{
			State: strings.Repeat("s", maxStateBytes), Nonce: strings.Repeat("n", maxNonceBytes),
			LoginHint: strings.Repeat("h", maxLoginHintBytes), Scopes: make([]string, maxScopes),
			ACRValues: []string{strings.Repeat("a", maxACRValueBytes)}, Prompt: []string{"login"},
			UILocales: oidc.Locales{language.French, language.German}, CodeChallenge: challenge,
			ResponseMode: oidc.ResponseModeQuery,
		}
	}
	if err := checkAuthRequestLimits(valid()); err != nil {
		t.Fatalf("values at the caps: %v", err)
	}
	for name, change := range map[string]func(*oidc.AuthRequest){
		"nonce":             func(r *oidc.AuthRequest) { r.Nonce += "n" },
		"login_hint":        func(r *oidc.AuthRequest) { r.LoginHint += "h" },
		"scopes":            func(r *oidc.AuthRequest) { r.Scopes = append(r.Scopes, "openid") },
		"acr_values count":  func(r *oidc.AuthRequest) { r.ACRValues = make([]string, maxACRValues+1) },
		"acr_value length":  func(r *oidc.AuthRequest) { r.ACRValues[0] += "a" },
		"prompt count":      func(r *oidc.AuthRequest) { r.Prompt = make([]string, maxPrompts+1) },
		"prompt length":     func(r *oidc.AuthRequest) { r.Prompt[0] = strings.Repeat("p", maxPromptBytes+1) },
		"ui_locales count":  func(r *oidc.AuthRequest) { r.UILocales = make(oidc.Locales, maxUILocales+1) },
		"challenge short":   func(r *oidc.AuthRequest) { r.CodeChallenge = challenge[1:] },
		"challenge long":    func(r *oidc.AuthRequest) { r.CodeChallenge = challenge + "A" },
		"challenge charset": func(r *oidc.AuthRequest) { r.CodeChallenge = strings.Repeat("A", 42) + "=" },
		"response_mode":     func(r *oidc.AuthRequest) { r.ResponseMode = "jwt" },
		"form_post":         func(r *oidc.AuthRequest) { r.ResponseMode = oidc.ResponseModeFormPost },
	} {
		r := valid()
		change(r)
		var oe *oidc.Error
		if err := checkAuthRequestLimits(r); !errors.As(err, &oe) || oe.ErrorType != oidc.InvalidRequest {
			t.Errorf("%s: %v, want invalid_request", name, err)
		}
		if r.State == "" {
			t.Errorf("%s: the state was dropped, though it is within the cap", name)
		}
	}
	r := valid()
	r.State += "s"
	if err := checkAuthRequestLimits(r); err == nil || r.State != "" {
		t.Errorf("oversized state: err %v, state kept %d bytes", err, len(r.State))
	}
}
