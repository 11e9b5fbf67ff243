package httpx

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// IPLimiter is the optional outer layer of docs/THREAT-MODEL.md rule 9: a token
// bucket per client address for the login form posts. It only takes load
// off the per-account guard and the hashing pool; it is never the
// defence, since addresses are cheap to rotate. IPv6 clients are grouped
// by /64, the block one subscriber usually gets.
type IPLimiter struct {
	perSecond float64
	burst     float64

	mu      sync.Mutex
	buckets map[netip.Addr]*ipBucket
}

type ipBucket struct {
	tokens float64
	last   time.Time
}

// maxIPBuckets bounds the limiter's memory; full buckets are dropped first.
const maxIPBuckets = 100_000

func NewIPLimiter(perMinute, burst int) *IPLimiter {
	if perMinute <= 0 {
		return nil
	}
	if burst < 1 {
		burst = 1
	}
	return &IPLimiter{perSecond: float64(perMinute) / 60, burst: float64(burst), buckets: map[netip.Addr]*ipBucket{}}
}

// allow takes a token for ip; when none is left it reports how long until
// one is.
func (l *IPLimiter) Allow(ip netip.Addr, now time.Time) (bool, time.Duration) {
	if l == nil || !ip.IsValid() {
		return true, 0
	}
	if ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		ip = p.Addr()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[ip]
	if !ok {
		if len(l.buckets) >= maxIPBuckets {
			l.sweep(now)
		}
		b = &ipBucket{tokens: l.burst, last: now}
		l.buckets[ip] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.perSecond)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.perSecond * float64(time.Second))
	return false, wait
}

// sweep drops buckets that have refilled completely (they hold no
// information), and if that is not enough, all of them.
func (l *IPLimiter) sweep(now time.Time) {
	for ip, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.perSecond >= l.burst {
			delete(l.buckets, ip)
		}
	}
	if len(l.buckets) >= maxIPBuckets {
		clear(l.buckets)
	}
}
