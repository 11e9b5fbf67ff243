package e2e

import (
	"slices"
	"testing"
)

// TestDiscoveryAdvertisesOnlySupportedClientAuth: an
// *_endpoint_auth_signing_alg_values_supported list means JWT client
// authentication (RFC 8414 §2); none is offered, so none is listed, and
// the methods listed are ones the endpoints accept.
func TestDiscoveryAdvertisesOnlySupportedClientAuth(t *testing.T) {
	t.Parallel()
	s := StartServer(t)
	d := confDiscovery(t, s)
	for _, ep := range []string{"token", "revocation", "introspection"} {
		methods, _ := d.Raw[ep+"_endpoint_auth_methods_supported"].([]any)
		jwt := slices.ContainsFunc(methods, func(m any) bool { return m == "private_key_jwt" || m == "client_secret_jwt" })
		if algs, ok := d.Raw[ep+"_endpoint_auth_signing_alg_values_supported"]; ok && !jwt {
			t.Errorf("%s_endpoint_auth_signing_alg_values_supported = %v without a JWT auth method among %v", ep, algs, methods)
		}
		if jwt {
			t.Errorf("%s endpoint advertises JWT client authentication: %v", ep, methods)
		}
		if len(methods) == 0 {
			t.Errorf("%s_endpoint_auth_methods_supported missing", ep)
		}
	}
}
