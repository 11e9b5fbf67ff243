// Package metrics holds the provider's Prometheus metrics. No label ever
// carries a user, a client address or any other per-person value
// (docs/THREAT-MODEL.md rule 13): every label takes its values from a
// fixed set in the code (TestLabelsArePerClassNotPerPerson).
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/totp-idp/idp/op/httpx"
)

// Registry is the provider's metrics; New builds it.
type Registry struct {
	reg             *prometheus.Registry
	attempts        *prometheus.CounterVec
	ipLimited       prometheus.Counter
	afterPassword   prometheus.Counter
	auditSuppressed *prometheus.CounterVec
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	hashWait        prometheus.Histogram
	dbTx            *prometheus.HistogramVec
	dbRetries       prometheus.Counter
}

// New returns a registry with the Go runtime and process collectors.
func New() *Registry {
	m := &Registry{reg: prometheus.NewRegistry()}
	m.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "idp_auth_attempts_total",
		Help: "Authentication attempts by factor (password, totp, recovery) and result."}, []string{"factor", "result"})
	m.ipLimited = prometheus.NewCounter(prometheus.CounterOpts{Name: "idp_login_ip_limited_total",
		Help: "Requests refused by the optional per-address limit."})
	m.afterPassword = prometheus.NewCounter(prometheus.CounterOpts{Name: "idp_second_factor_failed_after_password_total",
		Help: "Wrong second factors after a right password in the same flow: someone knows a password."})
	m.auditSuppressed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "idp_audit_suppressed_total",
		Help: "Audit events not written by the anonymous-event limiter, by event type."}, []string{"event"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "idp_http_requests_total",
		Help: "HTTP requests by route class and status code."}, []string{"class", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "idp_http_request_duration_seconds",
		Help: "HTTP request latency by route class.", Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}},
		[]string{"class"})
	m.hashWait = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "idp_password_hash_queue_wait_seconds",
		Help: "Time a password attempt waited for a hashing slot.", Buckets: []float64{.001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10}})
	m.dbTx = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "idp_db_transaction_duration_seconds",
		Help: "Write transactions, retries included, by outcome (ok, busy, error).", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}},
		[]string{"outcome"})
	m.dbRetries = prometheus.NewCounter(prometheus.CounterOpts{Name: "idp_db_retries_total",
		Help: "Transaction attempts repeated after a transient database failure."})
	m.reg.MustRegister(m.attempts, m.ipLimited, m.afterPassword, m.auditSuppressed, m.requests, m.duration,
		m.hashWait, m.dbTx, m.dbRetries,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Attempt counts one authentication attempt of factor with its result.
func (m *Registry) Attempt(factor, result string) { m.attempts.WithLabelValues(factor, result).Inc() }

// IPLimited counts a request refused by the per-address limit.
func (m *Registry) IPLimited() { m.ipLimited.Inc() }

// SecondFactorFailedAfterPassword counts a wrong second factor after a
// right password.
func (m *Registry) SecondFactorFailedAfterPassword() { m.afterPassword.Inc() }

// AuditSuppressed counts an audit event of type event the limiter dropped.
func (m *Registry) AuditSuppressed(event string) { m.auditSuppressed.WithLabelValues(event).Inc() }

// HashWait records how long a password attempt waited for its slot.
func (m *Registry) HashWait(d time.Duration) { m.hashWait.Observe(d.Seconds()) }

// Transaction records a write transaction (storage.TxObserver).
func (m *Registry) Transaction(d time.Duration, outcome string) {
	m.dbTx.WithLabelValues(outcome).Observe(d.Seconds())
}

// Retry counts a transaction attempt repeated (storage.TxObserver).
func (m *Registry) Retry() { m.dbRetries.Inc() }

// GaugeFunc registers a gauge read from f at each scrape (pool and
// hashing statistics).
func (m *Registry) GaugeFunc(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// CounterFunc registers a counter read from f at each scrape.
func (m *Registry) CounterFunc(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// Instrument counts and times next's requests under route class class.
func (m *Registry) Instrument(class string, next http.Handler) http.Handler {
	requests := m.requests.MustCurryWith(prometheus.Labels{"class": class})
	duration := m.duration.WithLabelValues(class)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &httpx.StatusRecorder{ResponseWriter: w}
		defer func() {
			duration.Observe(time.Since(start).Seconds())
			requests.WithLabelValues(strconv.Itoa(sw.Code())).Inc()
		}()
		next.ServeHTTP(sw, r)
	})
}

// Handler serves the metrics in the Prometheus text format.
func (m *Registry) Handler() http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}
