// Package redirect holds the rules for clients' redirect URIs: which may be
// registered (Check) and how a native app's request matches a registered
// one (NativeMatches, RFC 8252). op applies them at /authorize, the
// operator's CLI at registration.
package redirect

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// NativeMatches reports whether requested is one of registered, or
// differs from a registered http loopback redirect only in its port: a
// native app listens on a port the system gives it (RFC 8252 §7.3). That
// exception holds only for loopback IP literals (127.0.0.0/8, ::1), never
// for "localhost" (§8.3), and the scheme, the host as written, path and
// query must be the same strings (RFC 9700 §2.1: exact matching). A
// fragment or user info never matches.
func NativeMatches(registered []string, requested string) bool {
	if slices.Contains(registered, requested) {
		return true
	}
	host, _, rest, ok := splitLoopback(requested)
	if !ok {
		return false
	}
	for _, r := range registered {
		if rh, _, rrest, ok := splitLoopback(r); ok && rh == host && rrest == rest {
			return true
		}
	}
	return false
}

// splitLoopback splits an http URI with a loopback IP literal host into
// that host (as written), its port and everything after the authority. ok
// is false for anything else, and for user info, fragments and ports that
// are not a plain number from 1 to 65535.
func splitLoopback(raw string) (host, port, rest string, ok bool) {
	after, found := strings.CutPrefix(raw, "http://")
	if !found || strings.Contains(raw, "#") {
		return "", "", "", false
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Opaque != "" {
		return "", "", "", false
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() {
		return "", "", "", false
	}
	authority := u.Host
	if !strings.HasPrefix(after, authority) || strings.HasSuffix(authority, ":") {
		return "", "", "", false
	}
	host, port = u.Hostname(), u.Port()
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return "", "", "", false
		}
	}
	return host, port, after[len(authority):], true
}

// Check is the registration policy for redirect and post-logout
// redirect URIs (README, CLI): an absolute ASCII URI without fragment
// (RFC 6749 §3.1.2) or user info, whose scheme is
//   - https;
//   - http only with a loopback IP literal host, 127.0.0.0/8 or [::1]
//     (RFC 8252 §7.3): not "localhost", which a resolver or hosts file may
//     send elsewhere (§8.3), and for confidential clients too, for
//     development;
//   - a private-use scheme in reverse-DNS form such as
//     com.example.app:/cb, for public (native) clients only (RFC 8252
//     §7.1). This excludes javascript:, data:, file: and the like.
func Check(raw string, public bool) error {
	bad := func(why string) error { return fmt.Errorf("redirect URI %q: %s", raw, why) }
	if raw == "" {
		return bad("empty")
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] <= 0x20 || raw[i] > 0x7e {
			return bad("must be ASCII without spaces or control characters")
		}
	}
	if strings.Contains(raw, "#") {
		return bad("must not have a fragment")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || !strings.HasPrefix(raw, u.Scheme+":") {
		return bad("must be an absolute URI with a lower-case scheme")
	}
	if u.User != nil {
		return bad("must not have user info")
	}
	if _, err := url.ParseQuery(u.RawQuery); err != nil {
		// The authorization response is built by parsing this query and
		// adding code, state and iss: a part that does not parse (a ';'
		// separator, a broken escape) would be dropped on the way.
		return bad("its query must be name=value pairs joined by '&': " + err.Error())
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" || u.Opaque != "" {
			return bad("https needs a host")
		}
	case "http":
		if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() || u.Opaque != "" {
			return bad("http is allowed only for a loopback IP literal (127.0.0.1, [::1]); use https")
		}
	default:
		if !public {
			return bad("a private-use scheme is for native apps: register a --public client")
		}
		if !strings.Contains(u.Scheme, ".") {
			return bad("a private-use scheme must be a reverse domain name you control, such as com.example.app")
		}
	}
	return nil
}
