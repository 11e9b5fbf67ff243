// Package httpx holds the HTTP layer's building blocks that know nothing
// of sign-in: the client address behind trusted proxies
// (docs/THREAT-MODEL.md rule 10, R-P1) and the optional per-address limit,
// an outer layer only (rule 9).
package httpx

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP returns the address of the client that sent r (docs/THREAT-MODEL.md
// rule 10). The socket peer is the answer unless it is a trusted proxy;
// then X-Forwarded-For is walked from the right, skipping trusted proxies,
// and the first other address is the client. Unparsable entries stop the
// walk at the last trusted hop rather than being believed. Forwarded,
// X-Real-IP and True-Client-IP are never read.
//
// The result feeds logs, audit and an optional outer per-IP limiter only;
// no lockout key or lockout decision ever uses it.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := remoteAddr(r)
	if !isTrusted(peer, trusted) {
		return peer
	}
	hops := r.Header.Values("X-Forwarded-For")
	var all []string
	for _, h := range hops {
		all = append(all, strings.Split(h, ",")...)
	}
	client := peer
	for i := len(all) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(all[i]))
		if err != nil {
			return client
		}
		// A zone is free text to netip ("fe80::1%anything"): it names no
		// client, and must not carry words into the logs, the audit trail
		// or a notice (review G, I1).
		a = a.Unmap().WithZone("")
		client = a
		if !isTrusted(a, trusted) {
			return a
		}
	}
	return client
}

func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseCIDRs parses a comma-separated list of CIDR prefixes or addresses.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
