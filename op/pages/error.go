package pages

import (
	"errors"
	"net/http"
	"time"

	"github.com/totp-idp/idp/storage"
)

// Error is a handler's failure with the status and message of its page
// (a message key of the catalogue); Cause, when set, is logged and never
// shown. A handler returns it instead of answering (Handle).
type Error struct {
	Status int
	Msg    string
	// Back is the page's way back (a login or application URL), Client
	// the application's name on it; both may be empty.
	Back, Client string
	// What names the failed step in the log line.
	What  string
	Cause error
}

func (e *Error) Error() string {
	if e.Cause == nil {
		return e.What
	}
	return e.What + ": " + e.Cause.Error()
}

func (e *Error) Unwrap() error { return e.Cause }

// Internal is an unexpected failure of step what: 503 with Retry-After
// when the database stayed busy past every retry (nothing changed, the
// same request can be sent again), 500 otherwise.
func Internal(what string, err error) error {
	if errors.Is(err, storage.ErrBusy) {
		return &Error{Status: http.StatusServiceUnavailable, Msg: MsgBusy, What: what, Cause: err}
	}
	return &Error{Status: http.StatusInternalServerError, Msg: MsgInternal, What: what, Cause: err}
}

// Locked is the guard's refusal: 429 with Retry-After and the lockout
// page (docs/THREAT-MODEL.md rule 4). Hard: until an operator unlocks.
type Locked struct {
	Retry time.Duration
	Hard  bool
	Now   time.Time
	Back  string
}

func (e *Locked) Error() string { return "locked" }

// Form shows form page Page again with Data (its message says what was
// wrong with the value sent) and Status: 400 for a malformed value, 401
// for a wrong one.
type Form struct {
	Status int
	Page   string
	Data   Data
}

func (e *Form) Error() string { return e.Page + " form: " + e.Data.Error }

// SeeOther sends the browser to URL with 303: the sign-in is at another
// step than the form or page it asked for.
type SeeOther struct{ URL string }

func (e *SeeOther) Error() string { return "see " + e.URL }

// HandlerFunc is a page handler: it answers r, or returns the failure for
// Handle to answer.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handle adapts h to net/http: the one place a returned failure becomes a
// page and a log line (with the request's id, httpx.LogHandler).
func (p *Pages) Handle(h HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			p.Fail(w, r, err)
		}
	}
}

// Fail writes err's answer: a Locked, Form or SeeOther as such, an
// *Error as its page with its cause logged; any other error is an
// internal one.
func (p *Pages) Fail(w http.ResponseWriter, r *http.Request, err error) {
	var (
		pe     *Error
		locked *Locked
		form   *Form
		see    *SeeOther
	)
	switch {
	case errors.As(err, &locked):
		p.Locked(w, locked.Retry, locked.Hard, locked.Now, locked.Back)
		return
	case errors.As(err, &form):
		p.Render(w, form.Status, form.Page, form.Data)
		return
	case errors.As(err, &see):
		http.Redirect(w, r, see.URL, http.StatusSeeOther)
		return
	}
	if !errors.As(err, &pe) {
		pe = Internal("request", err).(*Error)
	}
	switch {
	case pe.Status == http.StatusServiceUnavailable:
		p.log.WarnContext(r.Context(), pe.What, "err", pe.Cause)
		w.Header().Set("Retry-After", "5")
	case pe.Status >= 500:
		p.log.ErrorContext(r.Context(), pe.What, "err", pe.Cause)
	}
	p.ErrorFor(w, pe.Status, pe.Msg, pe.Back, pe.Client)
}
