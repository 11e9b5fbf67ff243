package op

import (
	"testing"

	zop "github.com/zitadel/oidc/v3/pkg/op"
)

// TestRefreshRequestIsNotAnAuthRequest: were the refresh grant's request an
// op.AuthRequest, the library would issue a new refresh token only when its
// scopes still held offline_access, and a refresh with a narrowed scope
// would leave the presented token unrotated (SetUserinfoFromRequest says
// how acr reaches refreshed ID tokens instead).
func TestRefreshRequestIsNotAnAuthRequest(t *testing.T) {
	if _, ok := any(&refreshRequest{}).(zop.AuthRequest); ok {
		t.Fatal("refreshRequest implements op.AuthRequest")
	}
}
