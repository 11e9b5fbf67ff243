package guard

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/totp-idp/idp/op/secret"
	"github.com/totp-idp/idp/storage"
)

// Remembered devices: OWASP's "device cookie" answer to the lockout
// trade-off (OWASP Authentication Cheat Sheet; docs/THREAT-MODEL.md rule 14). A
// browser that completed a sign-in with both factors holds a signed cookie
// naming the account; its password attempts for that account count on the
// device's own counter, so an attacker's guesses from everywhere else lock
// only the account's shared counter ("untrusted clients"), and the owner
// still signs in from her devices during the attack. The second factor's
// counter and budget stay per account: a device cookie proves a past
// sign-in, not knowledge of the code.

// maxDeviceCookie bounds the cookie value read (a v1 value is ~150 bytes
// for a 36-byte user id).
const maxDeviceCookie = 512

// maxUserAgent bounds the user agent kept with a device (operator view).
const maxUserAgent = 200

// maxDevicesPerUser bounds what one account can make the server store.
const maxDevicesPerUser = 20

// DeviceCookieName is the device cookie's name.
func (g *Guard) DeviceCookieName() string { return g.cookies.Name("idp_device") }

// deviceMAC signs a device cookie's account and secret, so that a forged
// or altered cookie is refused before any database read.
func (g *Guard) deviceMAC(uid, secret string) []byte {
	m := hmac.New(sha256.New, g.deviceSecret)
	m.Write([]byte("device:v1:" + uid + "." + secret))
	return []byte(base64.RawURLEncoding.EncodeToString(m.Sum(nil)))
}

// presentedDevice is the id hash of the device cookie r carries, when that
// cookie is well formed, signed by this provider and names userID. The
// store decides whether it is still live (ClaimDeviceAttempt).
func (g *Guard) presentedDevice(r *http.Request, userID string) ([]byte, bool) {
	c, err := r.Cookie(g.DeviceCookieName())
	if err != nil || len(c.Value) > maxDeviceCookie {
		return nil, false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 4 || parts[0] != "v1" || parts[2] == "" {
		return nil, false
	}
	if subtle.ConstantTimeCompare([]byte(parts[3]), g.deviceMAC(parts[1], parts[2])) != 1 {
		return nil, false
	}
	uid, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || string(uid) != userID {
		// Another account's device cookie gives nothing here.
		return nil, false
	}
	return secret.Hash(parts[2]), true
}

// PresentedDevice is the id hash of the remembered device r's cookie
// names for userID, when well formed and signed (its liveness is the
// store's to decide): the device a user's own change keeps.
func (g *Guard) PresentedDevice(r *http.Request, userID string) []byte {
	d, _ := g.presentedDevice(r, userID)
	return d
}

// RememberDevice gives the browser a new device cookie after a completed
// sign-in that opened the SSO session sessionHash, renewing (and so
// revoking) the one it presented for the same account. A failure is
// logged and the sign-in goes on: the device only changes which counter
// later password attempts use. A session ended meanwhile (the account
// disabled, its password reset) leaves no device.
//
// known says the browser presented the cookie of a device the account
// still remembers: it has completed a sign-in to it before and nothing
// forgot it since (the "new browser" notice is for the others). A cookie
// that is well signed but revoked (a password reset, an operator's
// revoke-sessions, expiry) is new again (review H, F2).
func (g *Guard) RememberDevice(ctx context.Context, w http.ResponseWriter, r *http.Request, userID string, sessionHash []byte, now time.Time) (known bool) {
	value := secret.New(32)
	replaces, signed := g.presentedDevice(r, userID)
	if signed {
		live, err := g.store.Devices(ctx, userID, now)
		if err != nil {
			g.log.WarnContext(ctx, "remember device: list devices", "err", err)
		}
		for _, d := range live {
			known = known || subtle.ConstantTimeCompare(d.IDHash, replaces) == 1
		}
	}
	d := storage.Device{IDHash: secret.Hash(value), UserID: userID, CreatedAt: now, LastUsedAt: now,
		ExpiresAt: now.Add(g.deviceLifetime), UserAgent: CleanUserAgent(r.UserAgent()), Session: sessionHash}
	if err := g.store.RememberDevice(ctx, d, replaces, maxDevicesPerUser, now); errors.Is(err, storage.ErrNotFound) {
		g.log.InfoContext(ctx, "remember device: the sign-in's session ended meanwhile")
		return known
	} else if err != nil {
		g.log.WarnContext(ctx, "remember device", "err", err)
		return known
	}
	uid := base64.RawURLEncoding.EncodeToString([]byte(userID))
	// Strict: only the provider's own pages ever need to send it.
	g.cookies.SetSameSite(w, g.DeviceCookieName(), "v1."+uid+"."+value+"."+string(g.deviceMAC(uid, value)),
		g.deviceLifetime, http.SameSiteStrictMode)
	return known
}

// CleanUserAgent is ua as the provider keeps it (a remembered device, an
// SSO session): printable characters only, at most maxUserAgent bytes.
func CleanUserAgent(ua string) string {
	// Only a prefix is kept: never scan the whole of a header that may be
	// a megabyte long.
	if len(ua) > 4*maxUserAgent {
		ua = ua[:4*maxUserAgent]
	}
	ua = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, strings.ToValidUTF8(ua, ""))
	if len(ua) > maxUserAgent {
		// Cut at the bound; a rune cut in half is dropped.
		ua = strings.ToValidUTF8(ua[:maxUserAgent], "")
	}
	return ua
}

// Counter names the counter a password attempt was claimed on.
type Counter struct {
	device []byte // the remembered device's id hash; nil: the shared counter
}

const deviceNote = "counter=device"

// Note names the counter in the audit trail.
func (c Counter) Note() string {
	if c.device != nil {
		return deviceNote
	}
	return "counter=shared"
}

// ClaimPassword claims a password attempt for u: on the device's own
// counter when r carries a live device cookie for u, otherwise on the
// account's shared counter (docs/THREAT-MODEL.md rules 1–4; the device changes
// only which counter, never the arithmetic).
func (g *Guard) ClaimPassword(ctx context.Context, w http.ResponseWriter, r *http.Request, u storage.User, clientID string) (storage.AttemptClaim, Counter, error) {
	if dev, ok := g.presentedDevice(r, u.ID); ok {
		c, err := g.store.ClaimDeviceAttempt(ctx, dev, u.ID, g.now(), g.device)
		switch {
		case err == nil:
			if !c.Allowed {
				detail := fmt.Sprintf("factor=password counter=device failures=%d retry_after=%s", c.Failures, c.RetryAfter)
				g.trail.Limited(ctx, u.ID, "locked_refused", u.ID, u.Username, clientID, detail)
			}
			if c.AtLimit {
				// The store forgot the device with this claim.
				g.trail.Event(ctx, "device_forgotten", u.ID, u.Username, clientID,
					fmt.Sprintf("failures=%d: too many failed passwords with a remembered device's cookie", c.Failures))
				g.cookies.Clear(w, g.DeviceCookieName())
			}
			return c, Counter{device: dev}, nil
		case !errors.Is(err, storage.ErrNotFound):
			return c, Counter{}, fmt.Errorf("claim device attempt: %w", err)
		}
		// Expired, forgotten or revoked: the browser is untrusted again.
	}
	c, err := g.Claim(ctx, u.ID, u.Username, clientID, storage.FactorPassword)
	return c, Counter{}, err
}
