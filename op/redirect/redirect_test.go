package redirect

import "testing"

func TestNativeRedirectMatches(t *testing.T) {
	reg := []string{"http://127.0.0.1:9000/callback", "http://[::1]/cb", "com.example.app:/oauth2redirect", "https://app.example/cb"}
	for uri, want := range map[string]bool{
		"http://127.0.0.1:9000/callback":      true,
		"http://127.0.0.1:1/callback":         true,
		"http://127.0.0.1:65535/callback":     true,
		"http://127.0.0.1/callback":           true,
		"http://[::1]:4444/cb":                true,
		"com.example.app:/oauth2redirect":     true,
		"https://app.example/cb":              true,
		"https://app.example:444/cb":          false,
		"com.example.app:/other":              false,
		"https://127.0.0.1:9000/callback":     false,
		"HTTP://127.0.0.1:9000/callback":      false,
		"http://localhost:9000/callback":      false,
		"http://127.0.0.2:9000/callback":      false,
		"http://[::1]:9000/callback":          false,
		"http://[0:0:0:0:0:0:0:1]:4444/cb":    false,
		"http://127.0.0.1:9000/callback#x":    false,
		"http://127.0.0.1:9000/callback#":     false,
		"http://127.0.0.1:9000/callback/":     false,
		"http://127.0.0.1:9000/callback?":     false,
		"http://127.0.0.1:9000/callback?a=b":  false,
		"http://u@127.0.0.1:9000/callback":    false,
		"http://127.0.0.1:9000@evil/callback": false,
		"http://127.0.0.1:/callback":          false,
		"http://127.0.0.1:0/callback":         false,
		"http://127.0.0.1:09000/callback":     false,
		"http://127.0.0.1:65536/callback":     false,
		"http://127.0.0.1:+900/callback":      false,
		"http://127.0.0.1:9000%2F/callback":   false,
		"http://127.0.0.1:9000/../callback":   false,
		"http://127.0.0.1:9000/callback\x00":  false,
		"":                                    false,
	} {
		if got := NativeMatches(reg, uri); got != want {
			t.Errorf("NativeMatches(%q) = %t, want %t", uri, got, want)
		}
	}
}
