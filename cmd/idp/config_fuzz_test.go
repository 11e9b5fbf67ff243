package main

import (
	"flag"
	"strings"
	"testing"
	"time"
)

// FuzzReadConfig: any config file content either sets known flags or is
// refused with an error naming the file and line; nothing panics, and no
// line sets the config flag itself (README, Configuration).
func FuzzReadConfig(f *testing.F) {
	for _, s := range []string{"issuer = https://idp.example\n", "# comment\n\nlisten=127.0.0.1:8080", "config = other.conf",
		"totp-lock = 15m\ntotp-lock = x", "unknown = 1", "=\n", "listen \"127.0.0.1:1\"", "issuer = \"https://a\"\r\n", "\x00=\x00",
		strings.Repeat("a", 70000) + " = 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, content string) {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		issuer := fs.String("issuer", "", "")
		fs.String("listen", "", "")
		fs.String("config", "", "")
		lock := fs.Duration("totp-lock", time.Minute, "")
		err := readConfig(fs, strings.NewReader(content), "idp.conf", map[string]bool{})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "idp.conf:") {
				t.Fatalf("error without the file and line: %v", err)
			}
			return
		}
		if fs.Lookup("config").Value.String() != "" {
			t.Fatalf("a config file set --config: %q", content)
		}
		_, _ = issuer, lock
	})
}
