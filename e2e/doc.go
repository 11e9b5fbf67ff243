// Package e2e holds the end-to-end tests: each builds the real idp binary,
// starts it on 127.0.0.1 with a temporary database, and drives it over
// HTTP like a browser, like an independent relying party
// (coreos/go-oidc + x/oauth2) and like an attacker.
package e2e
