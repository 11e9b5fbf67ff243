package op

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// metrics are process-wide counters in Prometheus text format. No label
// ever carries a user, a client IP or any other per-person value.
type metrics struct {
	mu       sync.Mutex
	counters map[string]*atomic.Int64
}

func newMetrics() *metrics { return &metrics{counters: map[string]*atomic.Int64{}} }

// inc adds one to the counter name{labels}.
func (m *metrics) inc(name, labels string) {
	key := name
	if labels != "" {
		key += "{" + labels + "}"
	}
	m.mu.Lock()
	c, ok := m.counters[key]
	if !ok {
		c = new(atomic.Int64)
		m.counters[key] = c
	}
	m.mu.Unlock()
	c.Add(1)
}

func (m *metrics) attempt(factor, result string) {
	m.inc("idp_auth_attempts_total", fmt.Sprintf("factor=%q,result=%q", factor, result))
}

// MetricsHandler serves the counters. Serve it on a separate, private
// listener (idp serve --metrics-listen).
func (s *Server) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		s.metrics.mu.Lock()
		keys := make([]string, 0, len(s.metrics.counters))
		for k := range s.metrics.counters {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		seen := map[string]bool{}
		for _, k := range keys {
			name, _, _ := strings.Cut(k, "{")
			if !seen[name] {
				fmt.Fprintf(&b, "# TYPE %s counter\n", name)
				seen[name] = true
			}
			fmt.Fprintf(&b, "%s %d\n", k, s.metrics.counters[k].Load())
		}
		s.metrics.mu.Unlock()
		in, peak, total := s.hasher.Stats()
		fmt.Fprintf(&b, "# TYPE idp_password_hashes_in_flight gauge\nidp_password_hashes_in_flight %d\n", in)
		fmt.Fprintf(&b, "# TYPE idp_password_hashes_in_flight_max gauge\nidp_password_hashes_in_flight_max %d\n", peak)
		fmt.Fprintf(&b, "# TYPE idp_password_hash_capacity gauge\nidp_password_hash_capacity %d\n", s.hasher.Capacity())
		fmt.Fprintf(&b, "# TYPE idp_password_hashes_total counter\nidp_password_hashes_total %d\n", total)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(b.String()))
	})
}
