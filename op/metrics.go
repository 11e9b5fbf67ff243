package op

import (
	"errors"
	"net/http"
	"time"

	"github.com/totp-idp/idp/op/metrics"
	"github.com/totp-idp/idp/storage"
)

// MetricsHandler serves the metrics in Prometheus's text format. Serve it
// on a separate, private listener (idp serve --metrics-listen).
func (s *Server) MetricsHandler() http.Handler { return s.metrics.Handler() }

// registerMetrics adds what is read at each scrape: the password hasher's
// pool, and the database pool of a backend that has one.
func (s *Server) registerMetrics() {
	m := s.metrics
	m.GaugeFunc("idp_password_hashes_in_flight", "Password hashes being computed now.", func() float64 {
		in, _, _ := s.hasher.Stats()
		return float64(in)
	})
	m.GaugeFunc("idp_password_hashes_in_flight_max", "Most password hashes computed at once since start.", func() float64 {
		_, peak, _ := s.hasher.Stats()
		return float64(peak)
	})
	m.GaugeFunc("idp_password_hash_capacity", "Password hashes that may run at once (--hash-concurrency).", func() float64 {
		return float64(s.hasher.Capacity())
	})
	m.CounterFunc("idp_password_hashes_total", "Password hashes computed since start.", func() float64 {
		_, _, total := s.hasher.Stats()
		return float64(total)
	})
	if o, ok := s.store.(storage.Observable); ok {
		o.ObserveTransactions(txMetrics{m})
	}
	if p, ok := s.store.(storage.Pooled); ok {
		m.GaugeFunc("idp_db_pool_connections", "Database connections open.", func() float64 { return float64(p.PoolStats().Total) })
		m.GaugeFunc("idp_db_pool_connections_in_use", "Database connections in use.", func() float64 { return float64(p.PoolStats().InUse) })
		m.GaugeFunc("idp_db_pool_connections_max", "Most database connections the pool opens.", func() float64 { return float64(p.PoolStats().Max) })
		m.CounterFunc("idp_db_pool_waits_total", "Connection acquisitions that waited for a free connection.", func() float64 {
			return float64(p.PoolStats().Waits)
		})
		m.CounterFunc("idp_db_pool_wait_seconds_total", "Time spent waiting for a free connection.", func() float64 {
			return p.PoolStats().WaitTime.Seconds()
		})
	}
}

// txMetrics is the storage.TxObserver of the metrics.
type txMetrics struct{ m *metrics.Registry }

func (t txMetrics) Transaction(d time.Duration, err error) {
	outcome := "ok"
	switch {
	case errors.Is(err, storage.ErrBusy):
		outcome = "busy"
	case err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrWrongState) &&
		!errors.Is(err, storage.ErrReplay) && !errors.Is(err, storage.ErrConflict) && !errors.Is(err, storage.ErrReused):
		outcome = "error"
	}
	t.m.Transaction(d, outcome)
}

func (t txMetrics) Retry() { t.m.Retry() }
