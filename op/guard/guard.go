// Package guard decides who may try a password or a second-factor code,
// and records what every attempt cost (docs/THREAT-MODEL.md rules 1–4 and
// 14; docs/DESIGN.md, "The guard"). Every attempt is claimed before it is
// verified: the store counts it as a failure in the same transaction
// that checks the counter, keyed by the account id, a keyed hash of an
// unknown name, or a remembered device, never by an IP, a session or a
// submitted string. The arithmetic of a counter is storage.LockPolicy's;
// this package chooses which counter and policy, gives back a right
// password's claim, signs and reads device cookies, and writes the audit
// trail of refusals and failures.
package guard

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/totp-idp/idp/op/audit"
	"github.com/totp-idp/idp/op/httpx"
	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/op/metrics"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
)

// Guard is the attempt guard of one provider. Build it with New.
type Guard struct {
	store   storage.Store
	notify  *mail.Notifier
	trail   *audit.Trail
	metrics *metrics.Registry
	log     *slog.Logger
	now     func() time.Time
	cookies httpx.Cookies

	password, totp, device storage.LockPolicy
	deviceLifetime         time.Duration

	// unknownSecret keys the counters of usernames without an account;
	// deviceSecret signs device cookies (devices.go).
	unknownSecret, deviceSecret []byte
}

// Config is what the guard is built from.
type Config struct {
	Store   storage.Store
	Trail   *audit.Trail
	Metrics *metrics.Registry
	Log     *slog.Logger
	Now     func() time.Time
	Cookies httpx.Cookies
	// TokenKey is the database's token key (seal.OpenTokenKey): every
	// process on the database derives the same keys from it.
	TokenKey       [32]byte
	Password, TOTP storage.LockPolicy
	// Notify, when set, tells an account's verified address about a wrong
	// second factor after its correct password (issue 13).
	Notify *mail.Notifier
	// DeviceMaxFailures is a remembered device's limit (DevicePolicy),
	// DeviceLifetime its cookie's life from its last sign-in.
	DeviceMaxFailures int
	DeviceLifetime    time.Duration
}

// New builds a guard.
func New(c Config) *Guard {
	return &Guard{
		store: c.Store, trail: c.Trail, metrics: c.Metrics, log: c.Log, now: c.Now, cookies: c.Cookies,
		password: c.Password, totp: c.TOTP, device: DevicePolicy(c.Password, c.DeviceMaxFailures),
		deviceLifetime: c.DeviceLifetime, notify: c.Notify,
		unknownSecret: unknownSecret(c.TokenKey), deviceSecret: seal.DeriveKey(c.TokenKey, "device-cookie-key"),
	}
}

// DevicePolicy is a remembered device's password counter: the password
// policy's delays and its own limit, at which the device is forgotten
// (storage.Store.ClaimDeviceAttempt).
//
// It does not decay: its failures count from the device's last complete
// sign-in (which renews the device with an empty counter), so a stolen
// device cookie is worth maxFailures guesses however slowly they come,
// never one more per decay period.
func DevicePolicy(password storage.LockPolicy, maxFailures int) storage.LockPolicy {
	p := password
	p.HardLimit = maxFailures
	p.FreeFailures = min(p.FreeFailures, p.HardLimit)
	p.Decay = 0
	return p
}

func unknownSecret(tokenKey [32]byte) []byte { return seal.DeriveKey(tokenKey, "unknown-username-key") }

// NameKey is the counter key of a username without an account: a keyed
// hash, so the table holds no submitted names and is the same in every
// process on the database. An account keeps its name's key
// (storage.User.NameKey): creating it takes the name's counter over.
func NameKey(tokenKey [32]byte, username string) string {
	return nameKey(unknownSecret(tokenKey), username)
}

func nameKey(secret []byte, username string) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(username))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])
}

// Claim asks for the right to verify factor f of userID
// (docs/THREAT-MODEL.md rules 1–4): the store counts the attempt as a
// failure before anything is verified, keyed by the account id alone. No
// IP, session or submitted string takes part.
func (g *Guard) Claim(ctx context.Context, userID, username, clientID string, f storage.Factor) (storage.AttemptClaim, error) {
	p := g.password
	if f == storage.FactorTOTP {
		p = g.totp
	}
	c, err := g.store.ClaimAttempt(ctx, userID, f, g.now(), p)
	if err != nil {
		return c, fmt.Errorf("claim attempt: %w", err)
	}
	if !c.Allowed {
		detail := fmt.Sprintf("factor=%s failures=%d retry_after=%s hard=%t", f, c.Failures, c.RetryAfter, c.HardLocked)
		if f == storage.FactorPassword {
			// Anyone who knows the name gets this answer, without a
			// password; the TOTP step needs one and is always recorded.
			g.trail.Limited(ctx, userID, "locked_refused", userID, username, clientID, detail)
		} else {
			g.trail.Event(ctx, "locked_refused", userID, username, clientID, detail)
		}
	}
	return c, nil
}

// ClaimUnknown claims a password attempt for a username without an
// account, on its keyed-hash counter: counted and locked like an account
// (docs/THREAT-MODEL.md R-W5), so that the answers tell nobody which names
// exist (rule 11). key is the counter's, for Failed.
func (g *Guard) ClaimUnknown(ctx context.Context, username, clientID string) (c storage.AttemptClaim, key string, err error) {
	key = nameKey(g.unknownSecret, username)
	c, err = g.store.ClaimUnknownAttempt(ctx, key, g.now(), g.password)
	if err != nil {
		return c, key, fmt.Errorf("claim unknown attempt: %w", err)
	}
	if !c.Allowed {
		g.trail.Limited(ctx, key, "locked_refused", "", "", clientID, unknownUserNote(key))
	}
	return c, key, nil
}

// PasswordSucceeded gives back a right password's claim: only its own, so
// the shared counter holds what it would hold had the owner not signed in,
// as an unknown name's does (storage.LockPolicy.Succeeded). A device's
// counter starts afresh when the completed sign-in renews the device
// (RememberDevice), so nothing is given back on it here.
func (g *Guard) PasswordSucceeded(ctx context.Context, userID string, c storage.AttemptClaim, counter Counter) error {
	if counter.device != nil {
		return nil
	}
	return g.store.AttemptSucceeded(ctx, userID, storage.FactorPassword, c, g.now(), g.password)
}

// CodeSucceeded gives back the claim of a second-factor code that was
// right but could not complete the request (it had moved on meanwhile), as
// the completing step would have: the consecutive count is reset and the
// budget gets this claim back (storage.Store.AttemptSucceeded).
func (g *Guard) CodeSucceeded(ctx context.Context, userID string, c storage.AttemptClaim) error {
	return g.store.AttemptSucceeded(ctx, userID, storage.FactorTOTP, c, g.now(), g.totp)
}

// NotEvaluated records a second-factor claim whose code was never checked
// because the flow or the authenticator changed under it: it stays
// counted, so nothing is gained by racing it, and gets its event and any
// lock it set, but not the "failed after password" alert, which would say
// a code was wrong.
func (g *Guard) NotEvaluated(ctx context.Context, c storage.AttemptClaim, event, userID, clientID string) {
	g.record(ctx, c, event, userID, "", clientID, storage.FactorTOTP, "", "", false, false)
}

// ReauthFailed records a wrong second-factor code of a signed-in session
// (the account page's reauthentication, a new authenticator's first
// code): counted and locked like a sign-in's, but no password was typed
// for it, so not the "failed after password" alert (review of issue 12,
// A-F2: the page told its owner someone knew their password).
func (g *Guard) ReauthFailed(ctx context.Context, c storage.AttemptClaim, event, userID, clientID string) {
	g.record(ctx, c, event, userID, "", clientID, storage.FactorTOTP, "", "", true, false)
}

// Failed records the audit trail of a failed, already counted attempt.
// For a username without an account, unknownKey is its counter's key: the
// rows name it by that key (unknownUserNote) and are rate limited by it,
// since rotating made-up names costs an attacker nothing but hashing time.
//
// note names the counter for the password (Counter.Note).
func (g *Guard) Failed(ctx context.Context, c storage.AttemptClaim, event, userID, username, clientID string, f storage.Factor, unknownKey, note string) {
	g.record(ctx, c, event, userID, username, clientID, f, unknownKey, note, true, true)
}

// record writes the trail of a counted attempt; wrong: a value was checked
// and wrong; afterPassword: the flow's password was just proven.
func (g *Guard) record(ctx context.Context, c storage.AttemptClaim, event, userID, username, clientID string, f storage.Factor, unknownKey, note string, wrong, afterPassword bool) {
	write := func(ctx context.Context, typ, detail string) {
		if unknownKey == "" {
			g.trail.Event(ctx, typ, userID, username, clientID, detail)
			return
		}
		g.trail.Limited(ctx, unknownKey, typ, userID, username, clientID, detail+" "+unknownUserNote(unknownKey))
	}
	write(ctx, event, strings.TrimSpace(fmt.Sprintf("failures=%d %s", c.Failures, note)))
	if wrong && afterPassword && f == storage.FactorTOTP && userID != "" {
		// The second step exists only after a correct password in this
		// flow: a failure here means someone knows the password. One
		// event and one counter, for alerting and a later notification.
		g.metrics.SecondFactorFailedAfterPassword()
		// The notice, if any, is written with this event's row (at most
		// one an hour; op/mail).
		g.trail.Event(g.notify.With(ctx, userID, mail.SecondFactorFailed), "second_factor_failed_after_password", userID, username, clientID, event)
	}
	// A second step locked for an account is told to its owner with the
	// lock's row (at most one an hour; op/mail): only the password's
	// holder or the session's can reach it (NIST SP 800-63B-4 §3.2.2).
	lockCtx := ctx
	if f == storage.FactorTOTP && userID != "" && (c.HardLocked || c.AtLimit || c.RetryAfter > 0) {
		lockCtx = g.notify.With(ctx, userID, mail.SecondFactorLocked)
	}
	switch {
	case c.AtLimit && note == deviceNote:
		// A device at its limit is forgotten, and device_forgotten says
		// so (ClaimPassword): the account itself is not locked.
	case c.HardLocked:
		write(lockCtx, "hard_lock", fmt.Sprintf("factor=%s failures=%d", f, c.Failures))
	case c.AtLimit:
		// A decaying counter at its limit refuses until it forgets a
		// failure.
		write(lockCtx, "limit_reached", strings.TrimSpace(fmt.Sprintf("factor=%s failures=%d retry_after=%s %s", f, c.Failures, c.RetryAfter, note)))
	case c.RetryAfter > 0:
		write(lockCtx, "lock_started", strings.TrimSpace(fmt.Sprintf("factor=%s failures=%d duration=%s %s", f, c.Failures, c.RetryAfter, note)))
	}
}

// unknownUserNote names a username without an account in the audit trail
// and the log by a prefix of its keyed hash (the key of its counter), never
// by the name: what people type there is often their password. The prefix
// (72 bits) tells names apart and shows repeated attempts with one name.
func unknownUserNote(key string) string {
	return "unknown user name_key=" + key[:12]
}
