package op

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/admin"
	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/op/seal"

	"github.com/totp-idp/idp/storage"
	"github.com/totp-idp/idp/storage/sqlite"
)

// testArgon2 is a cheap argon2id for tests that exercise the handlers, not
// the hash.
var testArgon2 = password.Params{MemoryKiB: 64, Time: 1, Threads: 1}

// testStore opens a fresh SQLite store in t's temporary directory, closed
// when t ends, and a sealer with an all-zero test key.
func testStore(t testing.TB) (*sqlite.Store, *seal.Sealer) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "idp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, err := seal.New(make([]byte, 32), "")
	if err != nil {
		t.Fatal(err)
	}
	return st, sealer
}

// testEnv is the real handler stack in process: a provider on a fresh
// SQLite store, the user "ann" (password "correct horse", TOTP enrolled)
// and the confidential client "app" redirecting to https://rp.example/cb.
type testEnv struct {
	srv   *Server
	ts    *httptest.Server
	store *sqlite.Store
	admin *admin.Admin
	// annSecret is ann's TOTP secret (base32, from her provisioning URI).
	annSecret string
}

// newTestEnv builds a testEnv; mod, when given, changes the configuration
// before the provider is built. The hasher is a fast one (Config.Hasher;
// Config.Validate refuses weak argon2id parameters), so these tests
// exercise the handlers, not the hash.
func newTestEnv(t testing.TB, mod func(*Config)) *testEnv {
	t.Helper()
	return newTestEnvOn(t, mod, nil)
}

// newTestEnvOn is newTestEnv with the provider on wrap(store) (a store
// that fails on purpose, say); the accounts are created on the store itself.
func newTestEnvOn(t testing.TB, mod func(*Config), wrap func(storage.Store) storage.Store) *testEnv {
	t.Helper()
	ctx := context.Background()
	st, sealer := testStore(t)
	cfg := DefaultConfig("http://127.0.0.1:1")
	cfg.Sealer = sealer
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if mod != nil {
		mod(&cfg)
	}
	adm := &admin.Admin{Store: st, Sealer: sealer, Product: "t"}
	adm.Hasher, _ = password.NewHasher(testArgon2, 1, time.Second)
	ann, err := adm.AddUser(ctx, admin.NewUser{Username: "ann", Password: "correct horse"})
	if err != nil {
		t.Fatal(err)
	}
	uri, err := url.Parse(ann.TOTPURI)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.AddClient(ctx, admin.NewClient{ID: "app", RedirectURIs: []string{"https://rp.example/cb"}, Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	var provStore storage.Store = st
	if wrap != nil {
		provStore = wrap(st)
	}
	cfg.Hasher, _ = password.NewHasher(testArgon2, 2, time.Second)
	srv, err := New(ctx, cfg, provStore)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &testEnv{srv: srv, ts: ts, store: st, admin: adm, annSecret: uri.Query().Get("secret")}
}

// browser is a cookie-keeping client that sees every redirect.
func (e *testEnv) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// authorizeQuery is a valid code-flow request of "app" with PKCE S256.
func authorizeQuery() url.Values {
	return url.Values{"client_id": {"app"}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {"https://rp.example/cb"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}, "state": {"st"}}
}

// get fetches u with c and returns the status and body.
func get(t testing.TB, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
