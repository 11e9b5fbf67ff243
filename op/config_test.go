package op

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
)

func TestValidateIssuer(t *testing.T) {
	ok := []string{"https://id.example.com", "https://id.example.com/tenant", "http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:9000", "http://127.0.0.5"}
	bad := []string{"http://id.example.com", "http://10.0.0.1:8080", "ftp://x", "https://id.example.com?x=1", "https://id.example.com#f", "127.0.0.1:8080", "https://user@id.example.com"}
	for _, s := range ok {
		if err := ValidateIssuer(s); err != nil {
			t.Errorf("ValidateIssuer(%q): %v", s, err)
		}
	}
	for _, s := range bad {
		if err := ValidateIssuer(s); err == nil {
			t.Errorf("ValidateIssuer(%q) accepted", s)
		}
	}
}

// TestNewRefusesUnsafeConfig: op.New itself refuses a configuration that
// cannot hold the security model (a zero lock policy never locks), not
// only the command line in front of it.
func TestNewRefusesUnsafeConfig(t *testing.T) {
	ctx := context.Background()
	st, sealer := testStore(t)
	for name, mutate := range map[string]func(*Config){
		"zero TOTP policy":       func(c *Config) { c.TOTPPolicy = storage.LockPolicy{} },
		"zero password policy":   func(c *Config) { c.PasswordPolicy = storage.LockPolicy{} },
		"negative hash slots":    func(c *Config) { c.HashConcurrency = -1 },
		"zero session lifetime":  func(c *Config) { c.SessionLifetime = 0 },
		"weak argon2id":          func(c *Config) { c.Argon2 = password.Params{MemoryKiB: 64, Time: 1, Threads: 1} },
		"code lifetime of a day": func(c *Config) { c.CodeLifetime = 24 * time.Hour },
	} {
		cfg := DefaultConfig("http://127.0.0.1:1")
		cfg.Sealer = sealer
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		mutate(&cfg)
		if _, err := New(ctx, cfg, st); err == nil {
			t.Errorf("%s: op.New accepted it", name)
		}
	}
}

// TestConfigValidate: the default configuration is valid, and each unsafe
// setting is reported as a *ConfigError naming exactly that setting.
func TestConfigValidate(t *testing.T) {
	sealer, _ := seal.New(make([]byte, 32), "")
	valid := func() Config {
		c := DefaultConfig("https://id.example.com")
		c.Sealer = sealer
		return c
	}
	if c := valid(); c.Validate() != nil {
		t.Fatalf("default configuration refused: %v", c.Validate())
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   []string // the settings reported
	}{
		{"zero TOTP policy", func(c *Config) { c.TOTPPolicy = storage.LockPolicy{} },
			[]string{"TOTPPolicy.FreeFailures", "TOTPPolicy.BaseLock", "TOTPPolicy.HardLimit", "TOTPPolicy.Budget"}},
		{"no TOTP budget", func(c *Config) { c.TOTPPolicy.Budget = 0 }, []string{"TOTPPolicy.Budget"}},
		{"TOTP budget over 100", func(c *Config) { c.TOTPPolicy.Budget = 101 }, []string{"TOTPPolicy.Budget"}},
		{"TOTP budget window too short", func(c *Config) { c.TOTPPolicy.BudgetWindow = time.Minute }, []string{"TOTPPolicy.BudgetWindow"}},
		{"zero password policy", func(c *Config) { c.PasswordPolicy = storage.LockPolicy{} },
			[]string{"PasswordPolicy.FreeFailures", "PasswordPolicy.BaseLock", "PasswordPolicy.HardLimit", "PasswordPolicy.Decay"}},
		{"password counters reset by success", func(c *Config) { c.PasswordPolicy.Decay = 0 }, []string{"PasswordPolicy.Decay"}},
		{"password decay of years", func(c *Config) { c.PasswordPolicy.Decay = 3 * 365 * 24 * time.Hour }, []string{"PasswordPolicy.Decay"}},
		{"decaying second factor", func(c *Config) { c.TOTPPolicy.Decay = time.Hour }, []string{"TOTPPolicy.Decay"}},
		{"device cookie beyond 400 days", func(c *Config) { c.DeviceLifetime = 401 * 24 * time.Hour }, []string{"DeviceLifetime"}},
		{"device never forgotten", func(c *Config) { c.DeviceMaxFailures = 0 }, []string{"DeviceMaxFailures"}},
		{"device limit over 100", func(c *Config) { c.DeviceMaxFailures = 101 }, []string{"DeviceMaxFailures"}},
		{"negative lock", func(c *Config) { c.TOTPPolicy.BaseLock = -time.Minute }, []string{"TOTPPolicy.BaseLock"}},
		{"max lock below the first", func(c *Config) { c.PasswordPolicy.MaxLock = c.PasswordPolicy.BaseLock - time.Second },
			[]string{"PasswordPolicy.MaxLock"}},
		{"no hard limit", func(c *Config) { c.TOTPPolicy.HardLimit = 0 }, []string{"TOTPPolicy.HardLimit"}},
		{"hard limit over 100", func(c *Config) { c.PasswordPolicy.HardLimit = 101 }, []string{"PasswordPolicy.HardLimit"}},
		{"hard limit below the free failures", func(c *Config) { c.TOTPPolicy.HardLimit = c.TOTPPolicy.FreeFailures - 1 },
			[]string{"TOTPPolicy.HardLimit"}},
		{"negative hash concurrency", func(c *Config) { c.HashConcurrency = -2 }, []string{"HashConcurrency"}},
		{"no hash queue timeout", func(c *Config) { c.HashQueueTimeout = 0 }, []string{"HashQueueTimeout"}},
		{"weak argon2id", func(c *Config) { c.Argon2 = password.Params{MemoryKiB: 19 * 1024, Time: 1, Threads: 1} }, []string{"Argon2"}},
		{"argon2id without threads", func(c *Config) { c.Argon2.Threads = 0 }, []string{"Argon2"}},
		{"zero lifetimes", func(c *Config) {
			c.AuthRequestLifetime, c.CodeLifetime, c.AccessTokenLifetime, c.IDTokenLifetime = 0, 0, 0, 0
			c.RefreshTokenLifetime, c.SessionLifetime, c.SessionIdleTimeout, c.KeyRetention = 0, 0, 0, 0
		}, []string{"AuthRequestLifetime", "CodeLifetime", "AccessTokenLifetime", "IDTokenLifetime",
			"RefreshTokenLifetime", "SessionLifetime", "SessionIdleTimeout", "KeyRetention"}},
		{"negative lifetime", func(c *Config) { c.AccessTokenLifetime = -time.Second }, []string{"AccessTokenLifetime"}},
		{"no enrollment window", func(c *Config) { c.EnrollWithin = 0 }, []string{"EnrollWithin"}},
		{"long code lifetime", func(c *Config) { c.CodeLifetime = 11 * time.Minute }, []string{"CodeLifetime"}},
		{"idle timeout over the lifetime", func(c *Config) { c.SessionIdleTimeout = c.SessionLifetime + time.Minute },
			[]string{"SessionIdleTimeout"}},
		{"key retention under the ID token lifetime", func(c *Config) { c.KeyRetention = c.IDTokenLifetime / 2 }, []string{"KeyRetention"}},
		{"negative per-address rate", func(c *Config) { c.LoginRatePerIP = -1 }, []string{"LoginRatePerIP"}},
		{"per-address rate without burst", func(c *Config) { c.LoginRatePerIP, c.LoginBurstPerIP = 10, 0 }, []string{"LoginBurstPerIP"}},
		{"no acr", func(c *Config) { c.ACR = "" }, []string{"ACR"}},
		{"no sealer", func(c *Config) { c.Sealer = nil }, []string{"Sealer"}},
		{"http issuer", func(c *Config) { c.Issuer = "http://id.example.com" }, []string{"Issuer"}},
		{"no product name", func(c *Config) { c.ProductName = "" }, []string{"ProductName"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(&c)
			err := c.Validate()
			var got []string
			if joined, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range joined.Unwrap() {
					var ce *ConfigError
					if !errors.As(e, &ce) {
						t.Fatalf("not a *ConfigError: %v", e)
					}
					got = append(got, ce.Setting)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("reported %q, want %q (%v)", got, tc.want, err)
			}
		})
	}
}
