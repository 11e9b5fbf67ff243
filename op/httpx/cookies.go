package httpx

import (
	"net/http"
	"time"
)

// Cookies names and sets the provider's cookies. With Secure (an https
// issuer) every name gets the __Host- prefix: Secure, Path=/, no Domain,
// so no sibling host can plant or read them (RFC 6265bis §4.1.3.2).
type Cookies struct{ Secure bool }

// Name is base with the __Host- prefix when Secure.
func (c Cookies) Name(base string) string {
	if c.Secure {
		return "__Host-" + base
	}
	return base
}

// Set sets an HttpOnly, SameSite=Lax cookie for maxAge.
func (c Cookies) Set(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c.SetSameSite(w, name, value, maxAge, http.SameSiteLaxMode)
}

// SetSameSite is Set with another SameSite mode.
func (c Cookies) SetSameSite(w http.ResponseWriter, name, value string, maxAge time.Duration, mode http.SameSite) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: int(maxAge / time.Second),
		HttpOnly: true, Secure: c.Secure, SameSite: mode,
	})
}

// Clear removes cookie name.
func (c Cookies) Clear(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: c.Secure, SameSite: http.SameSiteLaxMode,
	})
}
