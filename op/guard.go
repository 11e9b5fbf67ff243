package op

import (
	"context"
	"fmt"
	"strings"

	"github.com/totp-idp/idp/storage"
)

// claim asks the attempt guard for the right to verify factor f of userID
// (docs/THREAT-MODEL.md rules 1–4): the store counts the attempt as a failure
// before anything is verified, keyed by the account id alone. No IP,
// session or submitted string takes part.
func (s *Server) claim(ctx context.Context, userID, username, clientID string, f storage.Factor) (storage.AttemptClaim, error) {
	p := s.cfg.PasswordPolicy
	if f == storage.FactorTOTP {
		p = s.cfg.TOTPPolicy
	}
	c, err := s.store.ClaimAttempt(ctx, userID, f, s.cfg.now(), p)
	if err != nil {
		return c, fmt.Errorf("claim attempt: %w", err)
	}
	if !c.Allowed {
		detail := fmt.Sprintf("factor=%s failures=%d retry_after=%s hard=%t", f, c.Failures, c.RetryAfter, c.HardLocked)
		if f == storage.FactorPassword {
			// Anyone who knows the name gets this answer, without a
			// password; the TOTP step needs one and is always recorded.
			s.trail.Limited(ctx, userID, "locked_refused", userID, username, clientID, detail)
		} else {
			s.trail.Event(ctx, "locked_refused", userID, username, clientID, detail)
		}
	}
	return c, nil
}

// failed records the audit trail of a failed, already counted attempt.
// For a username without an account, unknownKey is its counter's key: the
// rows name it by that key (unknownUserNote) and are rate limited by it,
// since rotating made-up names costs an attacker nothing but hashing time.
//
// note names the counter for the password (counter=shared or device).
func (s *Server) failed(ctx context.Context, c storage.AttemptClaim, event, userID, username, clientID string, f storage.Factor, unknownKey, note string) {
	write := func(typ, detail string) {
		if unknownKey == "" {
			s.trail.Event(ctx, typ, userID, username, clientID, detail)
			return
		}
		s.trail.Limited(ctx, unknownKey, typ, userID, username, clientID, detail+" "+unknownUserNote(unknownKey))
	}
	write(event, strings.TrimSpace(fmt.Sprintf("failures=%d %s", c.Failures, note)))
	if f == storage.FactorTOTP && userID != "" {
		// The second step exists only after a correct password in this
		// flow: a failure here means someone knows the password. One
		// event and one counter, for alerting and a later notification.
		s.metrics.Inc("idp_second_factor_failed_after_password_total", "")
		s.trail.Event(ctx, "second_factor_failed_after_password", userID, username, clientID, event)
	}
	switch {
	case c.HardLocked:
		write("hard_lock", fmt.Sprintf("factor=%s failures=%d", f, c.Failures))
	case c.AtLimit && note != "counter=device":
		// A decaying counter at its limit refuses until it forgets a
		// failure; a device at its limit is forgotten (device_forgotten).
		write("limit_reached", strings.TrimSpace(fmt.Sprintf("factor=%s failures=%d retry_after=%s %s", f, c.Failures, c.RetryAfter, note)))
	case c.RetryAfter > 0:
		write("lock_started", strings.TrimSpace(fmt.Sprintf("factor=%s failures=%d duration=%s %s", f, c.Failures, c.RetryAfter, note)))
	}
}

// unknownUserNote names a username without an account in the audit trail
// and the log by a prefix of its keyed hash (the key of its counter), never
// by the name: what people type there is often their password. The prefix
// (72 bits) tells names apart and shows repeated attempts with one name.
func unknownUserNote(key string) string {
	return "unknown user name_key=" + key[:12]
}
