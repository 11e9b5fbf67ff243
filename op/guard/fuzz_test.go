package guard

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/totp-idp/idp/op/httpx"
)

// FuzzDeviceCookie: no cookie value but the one this provider signed for
// the account is accepted as that account's device.
func FuzzDeviceCookie(f *testing.F) {
	s := &Guard{deviceSecret: bytes.Repeat([]byte{7}, 32), cookies: httpx.Cookies{Secure: true}}
	uid := base64.RawURLEncoding.EncodeToString([]byte("user-1"))
	secret := "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I"
	genuine := "v1." + uid + "." + secret + "." + string(s.deviceMAC(uid, secret))
	for _, v := range []string{genuine, genuine + "=", "v1." + uid + "." + secret + ".", "v1...", strings.ToUpper(genuine), "v1." + uid + "=." + secret + "." + string(s.deviceMAC(uid, secret))} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest(http.MethodPost, "https://idp.example/login/password", nil)
		r.Header.Set("Cookie", s.DeviceCookieName()+"="+v)
		c, err := r.Cookie(s.DeviceCookieName())
		if err != nil {
			return // net/http refused the header
		}
		if _, ok := s.presentedDevice(r, "user-1"); ok && c.Value != genuine {
			t.Fatalf("accepted %q as user-1's device", c.Value)
		}
	})
}
