package guard

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/audit"
	"github.com/totp-idp/idp/op/httpx"
	"github.com/totp-idp/idp/op/metrics"
	"github.com/totp-idp/idp/op/secret"
	"github.com/totp-idp/idp/storage"
	"github.com/totp-idp/idp/storage/sqlite"
)

// TestDeviceCookie: the cookie a completed sign-in sets names the account
// and is found again for it; any change to it, a cookie for another
// account, one signed by another provider, an oversized or malformed one
// is not a device (its attempts count on the shared counter).
func TestDeviceCookie(t *testing.T) {
	ctx := context.Background()
	srv, st, u, _ := newTestGuard(t, [32]byte{1})
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "https://idp.example/login/totp", nil)
	r.Header.Set("User-Agent", "Mozilla/5.0 \x00\u202etest"+strings.Repeat("x", 300))
	now := time.Now().UTC()
	srv.RememberDevice(ctx, w, r, u.ID, nil, now)
	var c *http.Cookie
	for _, k := range w.Result().Cookies() {
		if k.Name == "__Host-idp_device" {
			c = k
		}
	}
	if c == nil || !c.HttpOnly || !c.Secure || c.Path != "/" || c.Domain != "" || c.SameSite != http.SameSiteStrictMode ||
		c.MaxAge != int(testDeviceLifetime/time.Second) {
		t.Fatalf("device cookie: %+v", c)
	}
	ds, err := st.Devices(ctx, u.ID, now)
	if err != nil || len(ds) != 1 {
		t.Fatalf("devices after rememberDevice: %+v %v", ds, err)
	}
	if ua := ds[0].UserAgent; len(ua) > maxUserAgent || strings.ContainsAny(ua, "\x00\u202e") || !strings.HasPrefix(ua, "Mozilla/5.0 test") {
		t.Errorf("user agent kept as %q", ua)
	}
	with := func(name, value string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "https://idp.example/login/password", nil)
		r.AddCookie(&http.Cookie{Name: name, Value: value})
		return r
	}
	id, ok := srv.presentedDevice(with(c.Name, c.Value), u.ID)
	if !ok || !bytes.Equal(id, ds[0].IDHash) {
		t.Fatalf("the cookie set is not found again: %v", ok)
	}
	parts := strings.Split(c.Value, ".")
	other := base64.RawURLEncoding.EncodeToString([]byte("someone-else"))
	for name, value := range map[string]string{
		"other account named": strings.Join([]string{"v1", other, parts[2], parts[3]}, "."),
		"secret changed":      strings.Join([]string{"v1", parts[1], parts[2] + "A", parts[3]}, "."),
		"signature changed":   strings.Join([]string{"v1", parts[1], parts[2], strings.ToUpper(parts[3])}, "."),
		"no signature":        strings.Join(parts[:3], "."),
		"another version":     strings.Join(append([]string{"v2"}, parts[1:]...), "."),
		"extra part":          c.Value + ".x",
		"empty secret":        strings.Join([]string{"v1", parts[1], "", parts[3]}, "."),
		"oversized":           c.Value + strings.Repeat("A", maxDeviceCookie),
		"not base64 user":     strings.Join([]string{"v1", "!!", parts[2], parts[3]}, "."),
		"empty":               "",
	} {
		if _, ok := srv.presentedDevice(with(c.Name, value), u.ID); ok {
			t.Errorf("%s: accepted as a device", name)
		}
	}
	if _, ok := srv.presentedDevice(with(c.Name, c.Value), "someone-else"); ok {
		t.Error("ann's cookie accepted for another account")
	}
	if _, ok := srv.presentedDevice(with("idp_device", c.Value), u.ID); ok {
		t.Error("the cookie accepted without its __Host- prefix under https")
	}
	// A provider with another database (another token key) refuses it.
	srv2, _, _, _ := newTestGuard(t, [32]byte{2})
	if _, ok := srv2.presentedDevice(with(c.Name, c.Value), u.ID); ok {
		t.Error("another provider's signature accepted")
	}
}

// BenchmarkPresentedDevice is the device cookie's check on every password
// attempt that carries one: parse, HMAC-SHA256, SHA-256 of the secret; no
// argon2id and no database read (the claim itself is the store's).
func BenchmarkPresentedDevice(b *testing.B) {
	s := &Guard{deviceSecret: make([]byte, 32), cookies: httpx.Cookies{Secure: true}}
	secret := secret.New(32)
	uid := base64.RawURLEncoding.EncodeToString([]byte("user-1"))
	r := httptest.NewRequest(http.MethodPost, "https://idp.example/login/password", nil)
	r.AddCookie(&http.Cookie{Name: s.DeviceCookieName(), Value: "v1." + uid + "." + secret + "." + string(s.deviceMAC(uid, secret))})
	b.ResetTimer()
	for b.Loop() {
		if _, ok := s.presentedDevice(r, "user-1"); !ok {
			b.Fatal("cookie not accepted")
		}
	}
}

const testDeviceLifetime = 30 * 24 * time.Hour

// testClock is the guard's injected time.
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time      { return c.t }
func (c *testClock) add(d time.Duration) { c.t = c.t.Add(d) }

// newTestGuard is a guard for an https issuer on a fresh SQLite store
// with one account, whose token key is key, on a clock of its own.
// Password: the 3rd failure starts a lock; locks from 1 s to 1 min, limit 10, one
// failure forgotten per hour; TOTP: the same without decay; a device is
// forgotten at its 5th failure.
func newTestGuard(t testing.TB, key [32]byte) (*Guard, storage.Store, storage.User, *testClock) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "idp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &testClock{t: time.Now().UTC().Truncate(time.Second)}
	u := storage.User{ID: "u-ann", Username: "ann", PasswordHash: "x", CreatedAt: clk.t}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := metrics.New()
	clock := clk.now
	g := New(Config{Store: st, Log: log, Metrics: m, Now: clock, Cookies: httpx.Cookies{Secure: true}, TokenKey: key,
		Trail:             &audit.Trail{Store: st, Log: log, Now: clock, Limit: audit.NewLimiter(), Metrics: m},
		Password:          storage.LockPolicy{FreeFailures: 3, BaseLock: time.Second, MaxLock: time.Minute, HardLimit: 10, Decay: time.Hour},
		TOTP:              storage.LockPolicy{FreeFailures: 3, BaseLock: time.Second, MaxLock: time.Minute, HardLimit: 10},
		DeviceMaxFailures: 5, DeviceLifetime: testDeviceLifetime})
	return g, st, u, clk
}
