package e2e

import (
	"net/url"
	"testing"
)

// TestRefreshedIDTokenKeepsACR: an ID token from the refresh grant carries
// the acr of the original authentication, like its amr and auth_time
// (OpenID Connect Core §12.2: the other claims follow the rules of the
// original ID token), and no nonce.
func TestRefreshedIDTokenKeepsACR(t *testing.T) {
	t.Parallel()
	p := confNewProto(t)
	u, f, tok := confTokens(t, p.s, p.a, p.rpa, nil, "openid profile offline_access")
	first := confCheckID(t, p.s, p.rpa, tok, f, u, p.a)
	if first.ACR == "" || tok.RefreshToken == "" {
		t.Fatalf("first ID token acr %q, refresh token %q", first.ACR, tok.RefreshToken)
	}
	rt := tok.RefreshToken
	for i := 1; i <= 2; i++ {
		st, body := confRefresh(t, p.s, p.a, rt)
		if st != 200 {
			t.Fatalf("refresh %d: %d %v", i, st, body)
		}
		raw, _ := body["id_token"].(string)
		claims := confJWTPayload(t, raw)
		if claims["acr"] != first.ACR {
			t.Errorf("refresh %d: acr %v, want %q", i, claims["acr"], first.ACR)
		}
		if _, ok := claims["nonce"]; ok {
			t.Errorf("refresh %d: nonce %v in a refreshed ID token", i, claims["nonce"])
		}
		if int64(claims["auth_time"].(float64)) != first.AuthTime {
			t.Errorf("refresh %d: auth_time %v, want %d", i, claims["auth_time"], first.AuthTime)
		}
		rt, _ = body["refresh_token"].(string)
	}
	// A narrowed scope on refresh (RFC 6749 §6) keeps acr too, and still
	// rotates the refresh token.
	st, body, _ := confTokenRequest(t, p.s, p.a, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"openid"}})
	if st != 200 || body["refresh_token"] == nil || body["refresh_token"] == rt {
		t.Fatalf("refresh with scope=openid: %d %v", st, body)
	}
	if claims := confJWTPayload(t, body["id_token"].(string)); claims["acr"] != first.ACR {
		t.Errorf("refresh with scope=openid: acr %v", claims["acr"])
	}
	if st, body := confRefresh(t, p.s, p.a, rt); st != 400 {
		t.Errorf("the refresh token used with scope=openid still works: %d %v", st, body)
	}
}
