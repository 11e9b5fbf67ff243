package op

import (
	"errors"
	"net/http"

	"github.com/totp-idp/idp/storage"
)

// A login handler returns its failure instead of answering it: errPage
// (one adapter, page) turns the error into the page the person sees and
// the log line the operator reads, with the request id (logctx.go).

// pageError is a failure with the status and message of its page; cause,
// when set, is logged and never shown.
type pageError struct {
	status int
	msg    string
	// back is the page's way back (a login or application URL), client
	// the application's name on it; both may be empty.
	back, client string
	what         string
	cause        error
}

func (e *pageError) Error() string {
	if e.cause == nil {
		return e.what
	}
	return e.what + ": " + e.cause.Error()
}

func (e *pageError) Unwrap() error { return e.cause }

// internal is an unexpected failure of step what: 503 with Retry-After when
// the database stayed busy past every retry (nothing changed, the same
// request can be sent again), 500 otherwise.
func internal(what string, err error) error {
	if errors.Is(err, storage.ErrBusy) {
		return &pageError{status: http.StatusServiceUnavailable, msg: msgBusy, what: what, cause: err}
	}
	return &pageError{status: http.StatusInternalServerError, msg: msgInternal, what: what, cause: err}
}

// handlerFunc is a login handler: it answers r, or returns the failure for
// page to answer.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// page adapts h to net/http.
func (s *Server) page(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.answerError(w, r, err)
		}
	}
}

// answerError writes err's page and logs its cause.
func (s *Server) answerError(w http.ResponseWriter, r *http.Request, err error) {
	var pe *pageError
	if !errors.As(err, &pe) {
		pe = internal("request", err).(*pageError)
	}
	switch {
	case pe.status == http.StatusServiceUnavailable:
		s.log.WarnContext(r.Context(), pe.what, "err", pe.cause)
		w.Header().Set("Retry-After", "5")
	case pe.status >= 500:
		s.log.ErrorContext(r.Context(), pe.what, "err", pe.cause)
	}
	s.pages.errorPageFor(w, pe.status, pe.msg, pe.back, pe.client)
}

// internalError answers an unexpected failure from a helper that answers
// the request itself (see internal).
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.answerError(w, r, internal(what, err))
}
