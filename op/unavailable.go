package op

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/totp-idp/idp/op/pages"
)

// unavailable answers 503 with Retry-After in place of what the library
// answers when a store call of this request found the database busy or
// unreachable (storage.ErrBusy, noted by busy): the library would send
// the browser back to the application with server_error, or a client a
// 500. Nothing changed, so the same request can be sent again: a person
// gets the service page, a client RFC 6749's temporarily_unavailable.
//
// Any other 5xx answer of the library is replaced as well: the library
// puts the cause's text in error_description (a database error names the
// database, its user and socket), which goes to the log instead.
func (s *Server) unavailable(browser bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			uw := &unavailableWriter{ResponseWriter: w, ri: infoFrom(r.Context())}
			next.ServeHTTP(uw, r)
			if !uw.held {
				return
			}
			h := w.Header()
			for _, k := range []string{"Location", "Content-Type", "Content-Length", "Set-Cookie", "Retry-After"} {
				h.Del(k)
			}
			if !uw.ri.storeBusy {
				s.log.ErrorContext(r.Context(), "protocol server error", "path", r.URL.Path, "status", uw.status,
					"detail", strings.TrimSpace(uw.body.String()))
				if browser {
					s.pages.Error(w, http.StatusInternalServerError, pages.MsgInternal, "")
					return
				}
				h.Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte(`{"error":"server_error"}`))
				return
			}
			h.Set("Retry-After", "5")
			s.log.WarnContext(r.Context(), "database unavailable", "path", r.URL.Path)
			if browser {
				s.pages.Error(w, http.StatusServiceUnavailable, pages.MsgBusy, "")
				return
			}
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"temporarily_unavailable","error_description":"the service is busy; try again"}`))
		})
	}
}

// unavailableWriter holds back the library's answer once the request
// found the store busy, and any 5xx answer (its body kept for the log).
type unavailableWriter struct {
	http.ResponseWriter
	ri           *reqInfo
	held, passed bool
	status       int
	body         bytes.Buffer
}

func (w *unavailableWriter) WriteHeader(code int) {
	if w.held || w.passed {
		if w.passed {
			w.ResponseWriter.WriteHeader(code)
		}
		return
	}
	if w.ri.storeBusy && code >= 300 || code >= 500 {
		w.held, w.status = true, code
		return
	}
	w.passed = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *unavailableWriter) Write(b []byte) (int, error) {
	if !w.held && !w.passed {
		w.WriteHeader(http.StatusOK)
	}
	if w.held {
		if w.body.Len() < 4<<10 {
			w.body.Write(b)
		}
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *unavailableWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
