package httpx

import (
	"net/netip"
	"testing"
	"time"
)

func TestIPLimiter(t *testing.T) {
	l := NewIPLimiter(60, 3) // one per second, burst 3
	now := time.Unix(1_800_000_000, 0)
	a := netip.MustParseAddr("203.0.113.5")
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow(a, now); !ok {
			t.Fatalf("request %d refused within the burst", i+1)
		}
	}
	ok, wait := l.Allow(a, now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("4th request: ok=%v wait=%s", ok, wait)
	}
	if ok, _ := l.Allow(netip.MustParseAddr("203.0.113.6"), now); !ok {
		t.Error("another address shares the bucket")
	}
	if ok, _ := l.Allow(a, now.Add(1100*time.Millisecond)); !ok {
		t.Error("no token after refilling for 1.1 s")
	}
	// IPv6 addresses in one /64 share a bucket.
	v6a, v6b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	for i := 0; i < 3; i++ {
		l.Allow(v6a, now)
	}
	if ok, _ := l.Allow(v6b, now); ok {
		t.Error("an address of the same /64 got a fresh bucket")
	}
	if ok, _ := l.Allow(netip.MustParseAddr("2001:db8:1:3::1"), now); !ok {
		t.Error("another /64 was refused")
	}
	var off *IPLimiter
	if ok, _ := off.Allow(a, now); !ok {
		t.Error("a disabled limiter refused")
	}
}

func TestIPLimiterMemoryBound(t *testing.T) {
	l := NewIPLimiter(60, 2)
	now := time.Unix(1_800_000_000, 0)
	for i := 0; i < maxIPBuckets+10; i++ {
		l.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	if n := len(l.buckets); n > maxIPBuckets {
		t.Fatalf("%d buckets, bound %d", n, maxIPBuckets)
	}
}
