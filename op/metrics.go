package op

import (
	"fmt"
	"net/http"
	"strings"
)

// MetricsHandler serves the counters. Serve it on a separate, private
// listener (idp serve --metrics-listen).
func (s *Server) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		s.metrics.WriteText(&b)
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
