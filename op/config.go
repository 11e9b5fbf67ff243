// Package op is the OpenID provider: the wiring of zitadel/oidc's op package
// to our storage, the login flow (password → TOTP → done), the attempt guard,
// SSO sessions and the HTTP middleware around them.
package op

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
)

// Config is everything the provider needs besides its store.
type Config struct {
	// Issuer is the exact issuer URL; https unless the host is loopback.
	Issuer string
	// ProductName is shown on pages and in TOTP provisioning URIs.
	ProductName string

	// Lock policies of the attempt guard (docs/THREAT-MODEL.md rule 9).
	TOTPPolicy     storage.LockPolicy
	PasswordPolicy storage.LockPolicy

	// Remembered devices (OWASP's device cookie): a browser that completed
	// a sign-in gets a cookie for DeviceLifetime (renewed at every sign-in
	// in it); its password attempts for that account count on its own
	// counter, which forgets the device at DeviceMaxFailures failures.
	DeviceLifetime    time.Duration
	DeviceMaxFailures int

	// HashConcurrency bounds concurrent argon2id computations (docs/THREAT-MODEL.md rule 12);
	// 0 means the number of CPUs.
	HashConcurrency int
	// HashQueueTimeout is how long a login waits for a hashing slot before
	// it is answered 503.
	HashQueueTimeout time.Duration
	// Argon2 parameters for new hashes.
	Argon2 password.Params
	// Hasher, when set, is used instead of one built from Argon2,
	// HashConcurrency and HashQueueTimeout (in-process tests use a cheap
	// one; Validate still checks the parameters above).
	Hasher *password.Hasher

	AuthRequestLifetime  time.Duration
	CodeLifetime         time.Duration
	AccessTokenLifetime  time.Duration
	IDTokenLifetime      time.Duration
	RefreshTokenLifetime time.Duration
	SessionLifetime      time.Duration
	SessionIdleTimeout   time.Duration
	// KeyRetention keeps a retired signing key's public part in JWKS.
	KeyRetention time.Duration
	// EnrollWithin is how long after an account was put in the state of
	// enrolling at login (created without an authenticator, or reset) its
	// password alone may still lead to the enrollment page; after it the
	// sign-in is refused until an operator resets the account again.
	EnrollWithin time.Duration
	// ReauthWindow is how long a proof of the second factor lets the
	// account page's actions run (0: account.DefaultReauthWindow, 5 min).
	ReauthWindow time.Duration
	// PasswordMinLength is the shortest new password accepted, in
	// characters (0: password.DefaultMinLength; docs/THREAT-MODEL.md R-S5).
	PasswordMinLength int

	// ACR is the acr claim value of a password + TOTP login.
	ACR string

	// LoginRatePerIP, when positive, limits sign-in requests (/authorize
	// and login form posts) per client address (per minute, with
	// LoginBurstPerIP at once): an outer layer only, off by default since
	// clients behind one proxy share an address.
	LoginRatePerIP  int
	LoginBurstPerIP int

	// TrustedProxies are the peers whose X-Forwarded-For is honoured
	// (docs/THREAT-MODEL.md rule 10). Empty by default.
	TrustedProxies []netip.Prefix

	// Sealer holds the secret key that seals TOTP secrets, signing keys
	// and the opaque-token key (docs/THREAT-MODEL.md rule 12). Required.
	Sealer *seal.Sealer

	// Mail turns the e-mail notifications on (issue 13): they are queued
	// in the outbox with their events; the operator's process delivers
	// them (op/mail.Sender, idp serve --smtp-url or --mail-dir).
	Mail bool
	// NoNewDeviceNotice turns off the "sign-in from a new browser" mail,
	// on by default with Mail (--notify-new-device=false).
	NoNewDeviceNotice bool

	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultTOTPPolicy: 5 free failures, then locks of 15 min doubling to a
// 4 h cap, and a hard lock at 20 consecutive failures; and a budget of 20
// failures per 90 days that no success refills (one leaks out every 4.5
// days), so at most 20 + 81 = 101 wrong codes a year are ever evaluated
// however an attacker who knows the password paces them around the owner's
// logins (README, "The defaults and their arithmetic").
var DefaultTOTPPolicy = storage.LockPolicy{FreeFailures: 5, BaseLock: 15 * time.Minute, MaxLock: 4 * time.Hour, HardLimit: 20,
	Budget: 20, BudgetWindow: 90 * 24 * time.Hour}

// DefaultPasswordPolicy: 10 free failures, then delays from 30 s doubling
// to 15 min, and never more than 100 failures held (NIST SP 800-63B-4
// §3.2.2); one failure is forgotten a day and no success resets the count,
// so an account and a name without one look the same however long one
// waits, and over a year at most 100 + 365 password guesses are evaluated
// on a counter (README, "The defaults and their arithmetic").
var DefaultPasswordPolicy = storage.LockPolicy{FreeFailures: 10, BaseLock: 30 * time.Second, MaxLock: 15 * time.Minute, HardLimit: 100,
	Decay: 24 * time.Hour}

// Remembered devices: 180 days from the last sign-in in the browser, and
// forgotten at their 10th failed password since it (their counters do not
// decay: a stolen device cookie is worth 10 guesses however they are paced,
// then counts with everyone else's).
const (
	DefaultDeviceLifetime    = 180 * 24 * time.Hour
	DefaultDeviceMaxFailures = 10
	// maxPasswordDecay is the longest --password-decay: at the limit an
	// untrusted browser waits one decay period per guess.
	maxPasswordDecay = 30 * 24 * time.Hour
	// maxDeviceLifetime is the longest cookie lifetime browsers keep
	// (RFC 6265bis caps Max-Age at 400 days).
	maxDeviceLifetime = 400 * 24 * time.Hour
)

// DefaultEnrollWithin is a week: long enough for someone given a new
// account (or a reset one) on a Friday to enroll after a weekend away, short
// enough that an account whose password was handed out but never used
// does not stay password-only for long (README, "The defaults and their
// arithmetic").
const DefaultEnrollWithin = 7 * 24 * time.Hour

// DefaultConfig returns a configuration with safe defaults for issuer.
func DefaultConfig(issuer string) Config {
	return Config{
		Issuer:               issuer,
		ProductName:          "TOTP IdP",
		TOTPPolicy:           DefaultTOTPPolicy,
		PasswordPolicy:       DefaultPasswordPolicy,
		DeviceLifetime:       DefaultDeviceLifetime,
		DeviceMaxFailures:    DefaultDeviceMaxFailures,
		HashQueueTimeout:     10 * time.Second,
		Argon2:               password.OWASP,
		AuthRequestLifetime:  10 * time.Minute,
		CodeLifetime:         60 * time.Second,
		AccessTokenLifetime:  15 * time.Minute,
		IDTokenLifetime:      time.Hour,
		RefreshTokenLifetime: 7 * 24 * time.Hour,
		SessionLifetime:      12 * time.Hour,
		SessionIdleTimeout:   30 * time.Minute,
		KeyRetention:         48 * time.Hour,
		EnrollWithin:         DefaultEnrollWithin,
		ACR:                  "http://schemas.openid.net/pape/policies/2007/06/multi-factor",
	}
}

// ConfigError is one setting of a Config that the provider refuses to run
// with. Problem is worded without naming how the setting was given (a
// flag, a file, code), so that the command line can name its flag.
type ConfigError struct {
	// Setting is the Config field, e.g. "TOTPPolicy.MaxLock".
	Setting string
	Problem string
}

func (e *ConfigError) Error() string { return e.Setting + ": " + e.Problem }

// maxCodeLifetime caps authorization codes: RFC 6749 §4.1.2 recommends at
// most 10 minutes.
const maxCodeLifetime = 10 * time.Minute

// Validate reports every setting the security model cannot hold with, each
// as a *ConfigError (joined with errors.Join), or nil. New calls it, so a
// program embedding the provider cannot start it with, say, a zero lock
// policy that never locks.
func (c *Config) Validate() error {
	var errs []error
	bad := func(setting, format string, args ...any) {
		errs = append(errs, &ConfigError{Setting: setting, Problem: fmt.Sprintf(format, args...)})
	}
	if err := ValidateIssuer(c.Issuer); err != nil {
		bad("Issuer", "%v", err)
	}
	if c.ProductName == "" {
		bad("ProductName", "must not be empty (it names the provider on its pages and in authenticator apps)")
	}
	validatePolicy(bad, "TOTPPolicy", c.TOTPPolicy)
	validatePolicy(bad, "PasswordPolicy", c.PasswordPolicy)
	if c.ReauthWindow < 0 || c.ReauthWindow > time.Hour {
		// NIST SP 800-63B-4 asks a fresh proof before authenticators
		// change; an hour is no longer fresh.
		bad("ReauthWindow", "must be between 0 (the default, 5m) and 1h, not %s", c.ReauthWindow)
	}
	if c.PasswordMinLength != 0 && (c.PasswordMinLength < password.DefaultMinLength || c.PasswordMinLength > 64) {
		// Below 8 NIST SP 800-63B-4 §3.1.1.2 forbids; above 64 a
		// passphrase of the length it requires be accepted would be
		// refused.
		bad("PasswordMinLength", "must be between %d and 64 characters, not %d (NIST SP 800-63B-4 §3.1.1.2)", password.DefaultMinLength, c.PasswordMinLength)
	}
	if c.TOTPPolicy.Budget < 1 {
		// Without it the consecutive counter, reset by every owner
		// login, bounds nothing (README, "The defaults and their
		// arithmetic").
		bad("TOTPPolicy.Budget", "must be at least 1, not %d: the second factor needs a failure budget that successes do not refill", c.TOTPPolicy.Budget)
	}
	if c.PasswordPolicy.Decay < time.Second || c.PasswordPolicy.Decay > maxPasswordDecay {
		// Success resets would tell accounts from unknown names; a decay
		// of years would make the limit a lock without end for every
		// browser not remembered (docs/THREAT-MODEL.md rule 9).
		bad("PasswordPolicy.Decay", "must be between 1s and 720h (30 days), not %s: password counters forget failures by time, never by a success", c.PasswordPolicy.Decay)
	}
	if c.TOTPPolicy.Decay != 0 {
		bad("TOTPPolicy.Decay", "must be 0, not %s: the second factor keeps its hard lock and its budget", c.TOTPPolicy.Decay)
	}
	if c.DeviceLifetime < time.Minute || c.DeviceLifetime > maxDeviceLifetime {
		bad("DeviceLifetime", "must be between 1m and 400 days (the longest a browser keeps a cookie), not %s", c.DeviceLifetime)
	}
	if c.DeviceMaxFailures < 1 || c.DeviceMaxFailures > 100 {
		bad("DeviceMaxFailures", "must be between 1 and 100 (NIST SP 800-63B-4 §3.2.2), not %d", c.DeviceMaxFailures)
	}
	if c.HashConcurrency < 0 {
		bad("HashConcurrency", "must be 0 (one per CPU) or more, not %d", c.HashConcurrency)
	}
	if c.HashQueueTimeout <= 0 {
		bad("HashQueueTimeout", "must be longer than 0, not %s", c.HashQueueTimeout)
	}
	if !c.Argon2.MeetsOWASP() {
		bad("Argon2", "m=%d KiB, t=%d, p=%d is below every OWASP argon2id configuration (m=19 MiB with t=2, or the equivalents)",
			c.Argon2.MemoryKiB, c.Argon2.Time, c.Argon2.Threads)
	}
	for _, d := range []struct {
		setting string
		v       time.Duration
	}{
		{"AuthRequestLifetime", c.AuthRequestLifetime}, {"CodeLifetime", c.CodeLifetime},
		{"AccessTokenLifetime", c.AccessTokenLifetime}, {"IDTokenLifetime", c.IDTokenLifetime},
		{"RefreshTokenLifetime", c.RefreshTokenLifetime}, {"SessionLifetime", c.SessionLifetime},
		{"SessionIdleTimeout", c.SessionIdleTimeout}, {"KeyRetention", c.KeyRetention},
		{"EnrollWithin", c.EnrollWithin},
	} {
		if d.v <= 0 {
			bad(d.setting, "must be longer than 0, not %s", d.v)
		}
	}
	if c.CodeLifetime > maxCodeLifetime {
		bad("CodeLifetime", "must be at most %s (RFC 6749 §4.1.2), not %s", maxCodeLifetime, c.CodeLifetime)
	}
	if c.SessionIdleTimeout > c.SessionLifetime && c.SessionLifetime > 0 {
		bad("SessionIdleTimeout", "%s is longer than the session lifetime (%s)", c.SessionIdleTimeout, c.SessionLifetime)
	}
	if c.KeyRetention < c.IDTokenLifetime && c.KeyRetention > 0 {
		bad("KeyRetention", "%s is shorter than the ID token lifetime (%s): tokens signed just before a key rotation would stop verifying while still valid", c.KeyRetention, c.IDTokenLifetime)
	}
	if c.LoginRatePerIP < 0 {
		bad("LoginRatePerIP", "must be 0 (off) or more, not %d", c.LoginRatePerIP)
	}
	if c.LoginRatePerIP > 0 && c.LoginBurstPerIP < 1 {
		bad("LoginBurstPerIP", "must be at least 1 when the per-address limit is on, not %d", c.LoginBurstPerIP)
	}
	if c.ACR == "" {
		bad("ACR", "must not be empty")
	}
	if c.Sealer == nil {
		bad("Sealer", "is required: it holds the secret key that seals TOTP secrets and signing keys")
	}
	return errors.Join(errs...)
}

// validatePolicy checks one factor's lock policy (docs/THREAT-MODEL.md
// rules 3 and 9).
func validatePolicy(bad func(setting, format string, args ...any), name string, p storage.LockPolicy) {
	if p.FreeFailures < 1 {
		bad(name+".FreeFailures", "must be at least 1, not %d", p.FreeFailures)
	}
	if p.BaseLock <= 0 {
		bad(name+".BaseLock", "must be longer than 0, not %s: a lock of nothing never locks", p.BaseLock)
	}
	if p.MaxLock < p.BaseLock {
		bad(name+".MaxLock", "%s is shorter than the first lock (%s)", p.MaxLock, p.BaseLock)
	}
	// NIST SP 800-63B-4 §3.2.2: at most 100 consecutive failed attempts
	// on one account, for every authenticator.
	if p.HardLimit < max(p.FreeFailures, 1) || p.HardLimit > 100 {
		bad(name+".HardLimit", "must be between the failures before the first lock (%d) and 100 (NIST SP 800-63B-4 §3.2.2), not %d", p.FreeFailures, p.HardLimit)
	}
	if p.Budget < 0 || p.Budget > 100 {
		bad(name+".Budget", "must be between 0 (none) and 100 (NIST SP 800-63B-4 §3.2.2), not %d", p.Budget)
	}
	if p.Budget > 0 && p.BudgetWindow < time.Hour {
		bad(name+".BudgetWindow", "must be at least 1h, not %s: the budget leaks one failure every window/budget", p.BudgetWindow)
	}
}

// ValidateIssuer accepts https issuers, and http only for loopback hosts
// (development and tests).
func ValidateIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("issuer %q must be an absolute URL without query, fragment or user info", issuer)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("an http:// issuer is accepted only for loopback hosts (127.0.0.0/8, ::1, localhost); use https")
	default:
		return fmt.Errorf("issuer %q must use https", issuer)
	}
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now().UTC()
	}
	return time.Now().UTC()
}

func (c *Config) secureCookies() bool {
	u, err := url.Parse(c.Issuer)
	return err == nil && u.Scheme == "https"
}
