package op

import (
	"net/http"

	"github.com/totp-idp/idp/op/pages"
)

// unavailable answers 503 with Retry-After in place of what the library
// answers when a store call of this request found the database busy or
// unreachable (storage.ErrBusy, noted by busy): the library would send
// the browser back to the application with server_error, or a client a
// 500. Nothing changed, so the same request can be sent again: a person
// gets the service page, a client RFC 6749's temporarily_unavailable.
func (s *Server) unavailable(browser bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			uw := &unavailableWriter{ResponseWriter: w, ri: infoFrom(r.Context())}
			next.ServeHTTP(uw, r)
			if !uw.held {
				return
			}
			h := w.Header()
			for _, k := range []string{"Location", "Content-Type", "Content-Length", "Set-Cookie"} {
				h.Del(k)
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
// found the store busy.
type unavailableWriter struct {
	http.ResponseWriter
	ri           *reqInfo
	held, passed bool
}

func (w *unavailableWriter) WriteHeader(code int) {
	if w.held || w.passed {
		if w.passed {
			w.ResponseWriter.WriteHeader(code)
		}
		return
	}
	if w.ri.storeBusy && code >= 300 {
		w.held = true
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
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *unavailableWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
