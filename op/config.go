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

	"github.com/totp-idp/idp/storage"
)

// Config is everything the provider needs besides its store.
type Config struct {
	// Issuer is the exact issuer URL; https unless the host is loopback.
	Issuer string
	// ProductName is shown on pages and in TOTP provisioning URIs.
	ProductName string

	// Lock policies of the attempt guard (threat model rule 9).
	TOTPPolicy     storage.LockPolicy
	PasswordPolicy storage.LockPolicy

	// HashConcurrency bounds concurrent argon2id computations (rule 12);
	// 0 means the number of CPUs.
	HashConcurrency int
	// HashQueueTimeout is how long a login waits for a hashing slot before
	// it is answered 503.
	HashQueueTimeout time.Duration
	// Argon2 parameters for new hashes.
	Argon2 Argon2Params

	AuthRequestLifetime  time.Duration
	CodeLifetime         time.Duration
	AccessTokenLifetime  time.Duration
	IDTokenLifetime      time.Duration
	RefreshTokenLifetime time.Duration
	SessionLifetime      time.Duration
	SessionIdleTimeout   time.Duration
	// KeyRetention keeps a retired signing key's public part in JWKS.
	KeyRetention time.Duration

	// ACR is the acr claim value of a password + TOTP login.
	ACR string

	// LoginRatePerIP, when positive, limits sign-in requests (/authorize
	// and login form posts) per client address (per minute, with
	// LoginBurstPerIP at once): an outer layer only, off by default since
	// clients behind one proxy share an address.
	LoginRatePerIP  int
	LoginBurstPerIP int

	// TrustedProxies are the peers whose X-Forwarded-For is honoured
	// (rule 10). Empty by default.
	TrustedProxies []netip.Prefix

	// Sealer holds the secret key that seals TOTP secrets, signing keys
	// and the opaque-token key (threat model rule 12). Required.
	Sealer *Sealer

	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Argon2Params are argon2id cost parameters.
type Argon2Params struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// OWASPArgon2 is the OWASP Password Storage Cheat Sheet minimum for
// argon2id: m=19 MiB, t=2, p=1.
var OWASPArgon2 = Argon2Params{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

// DefaultTOTPPolicy: 5 free failures, then locks of 15 min doubling to a
// 4 h cap, and a hard lock at 20 consecutive failures (README, "Security
// model", has the guesses-per-day arithmetic).
var DefaultTOTPPolicy = storage.LockPolicy{FreeFailures: 5, BaseLock: 15 * time.Minute, MaxLock: 4 * time.Hour, HardLimit: 20}

// DefaultPasswordPolicy: 10 free failures, then per-account delays from
// 30 s doubling to 15 min, and a hard stop at 100 consecutive failures
// (NIST SP 800-63B §5.2.2).
var DefaultPasswordPolicy = storage.LockPolicy{FreeFailures: 10, BaseLock: 30 * time.Second, MaxLock: 15 * time.Minute, HardLimit: 100}

// DefaultConfig returns a configuration with safe defaults for issuer.
func DefaultConfig(issuer string) Config {
	return Config{
		Issuer:               issuer,
		ProductName:          "TOTP IdP",
		TOTPPolicy:           DefaultTOTPPolicy,
		PasswordPolicy:       DefaultPasswordPolicy,
		HashQueueTimeout:     10 * time.Second,
		Argon2:               OWASPArgon2,
		AuthRequestLifetime:  10 * time.Minute,
		CodeLifetime:         60 * time.Second,
		AccessTokenLifetime:  15 * time.Minute,
		IDTokenLifetime:      time.Hour,
		RefreshTokenLifetime: 7 * 24 * time.Hour,
		SessionLifetime:      12 * time.Hour,
		SessionIdleTimeout:   30 * time.Minute,
		KeyRetention:         48 * time.Hour,
		ACR:                  "http://schemas.openid.net/pape/policies/2007/06/multi-factor",
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
