package httpx

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted, err := ParseCIDRs("10.0.0.0/8, 127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		peer    string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"untrusted peer ignores XFF", "192.0.2.9:5555", []string{"1.2.3.4"}, trusted, "192.0.2.9"},
		{"no trusted proxies by default", "127.0.0.1:5555", []string{"1.2.3.4"}, nil, "127.0.0.1"},
		{"trusted peer: rightmost untrusted", "10.1.1.1:80", []string{"spoofed.example, 203.0.113.7"}, trusted, "203.0.113.7"},
		{"walk past several trusted hops", "10.1.1.1:80", []string{"198.51.100.3, 203.0.113.7, 10.2.2.2"}, trusted, "203.0.113.7"},
		{"several header lines", "10.1.1.1:80", []string{"198.51.100.3", "203.0.113.8"}, trusted, "203.0.113.8"},
		{"garbage stops at last trusted hop", "10.1.1.1:80", []string{"203.0.113.7, not-an-ip"}, trusted, "10.1.1.1"},
		{"all trusted: leftmost seen", "10.1.1.1:80", []string{"10.3.3.3"}, trusted, "10.3.3.3"},
		{"ipv6 peer", "[2001:db8::1]:443", []string{"1.2.3.4"}, trusted, "2001:db8::1"},
		{"mapped ipv4 peer is trusted", "[::ffff:10.1.1.1]:80", []string{"203.0.113.9"}, trusted, "203.0.113.9"},
		// A zone is free text: it is dropped, never logged or mailed
		// (review G, I1).
		{"a forwarded zone is dropped", "10.1.1.1:80", []string{"fe80::1%Call +1-555-0100 or open https://evil.example/help"}, trusted, "fe80::1"},
		{"a peer's zone is dropped", "[fe80::2%eth0]:80", nil, trusted, "fe80::2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = c.peer
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			r.Header.Set("X-Real-IP", "6.6.6.6")
			r.Header.Set("Forwarded", "for=6.6.6.6")
			if got := ClientIP(r, c.trusted); got.String() != c.want {
				t.Errorf("ClientIP = %s, want %s", got, c.want)
			}
		})
	}
}

func TestParseCIDRsRejectsGarbage(t *testing.T) {
	for _, s := range []string{"10.0.0.0/33", "not-a-cidr", "1.2.3"} {
		if _, err := ParseCIDRs(s); err == nil {
			t.Errorf("ParseCIDRs(%q) accepted", s)
		}
	}
	p, err := ParseCIDRs("")
	if err != nil || len(p) != 0 {
		t.Errorf("empty list: %v %v", p, err)
	}
}
