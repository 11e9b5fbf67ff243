package httpx

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/totp-idp/idp/op/secret"
)

// Baseline is what every request gets, whatever its route class.
type Baseline struct {
	Log            *slog.Logger
	TrustedProxies []netip.Prefix
	// HSTS sends Strict-Transport-Security (an https issuer).
	HSTS bool
	// MaxBody bounds every request body.
	MaxBody int64
}

// Wrap gives next's requests an id and the client address (RequestFrom;
// docs/THREAT-MODEL.md rule 10), a body limit, baseline security headers
// (OWASP ASVS 5.0 §3.4), an access log line, and recovery from panics
// without leaking a stack trace to the client.
func (b Baseline) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rq := &Request{ID: secret.New(9), IP: ClientIP(r, b.TrustedProxies)}
		r = r.WithContext(WithRequest(r.Context(), rq))
		r.Body = http.MaxBytesReader(w, r.Body, b.MaxBody)
		h := w.Header()
		h.Set("X-Request-Id", rq.ID)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if b.HSTS {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		sw := &StatusRecorder{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				b.Log.ErrorContext(r.Context(), "panic", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if sw.status == 0 {
					http.Error(sw, "internal error", http.StatusInternalServerError)
				}
			}
			// LogHandler adds the request id and address.
			b.Log.LogAttrs(r.Context(), slog.LevelInfo, "http", slog.String("method", r.Method),
				slog.String("path", r.URL.Path), slog.Int("status", sw.Code()), slog.Duration("dur", time.Since(start)))
		}()
		next.ServeHTTP(sw, r)
	})
}

// StatusRecorder remembers the status code written through it.
type StatusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *StatusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *StatusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Code is the status written (200 when none was, as net/http sends).
func (w *StatusRecorder) Code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

func (w *StatusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
