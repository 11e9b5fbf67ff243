package op

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/storage"
)

// busyStore is a store whose attempt guard finds the database locked.
type busyStore struct{ storage.Store }

func (busyStore) ClaimAttempt(context.Context, string, storage.Factor, time.Time, storage.LockPolicy) (storage.AttemptClaim, error) {
	return storage.AttemptClaim{}, fmt.Errorf("sqlite: claim attempt: %w", storage.ErrBusy)
}

// TestLockedDatabaseAnswers503: when the database stays locked, the login
// answers 503 with Retry-After and a plain message, and the flow survives
// to be retried.
func TestLockedDatabaseAnswers503(t *testing.T) {
	ctx := context.Background()
	st, sealer := testStore(t)
	cfg := DefaultConfig("http://127.0.0.1:1")
	cfg.Sealer = sealer
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	admin := &Admin{Store: st, Sealer: sealer, Product: "t"}
	admin.Hasher, _ = password.NewHasher(testArgon2, 1, time.Second)
	if _, err := admin.AddUser(ctx, NewUser{Username: "ann", Password: "correct horse"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AddClient(ctx, NewClient{ID: "app", RedirectURIs: []string{"https://rp.example/cb"}, Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	srv, err := New(ctx, cfg, busyStore{st})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"client_id": {"app"}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {"https://rp.example/cb"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	resp, err := c.Get(ts.URL + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = c.Get(ts.URL + resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	form := url.Values{"username": {"ann"}, "password": {"correct horse"}}
	for _, m := range regexp.MustCompile(`name="(id|csrf)" value="([^"]*)"`).FindAllStringSubmatch(string(page), -1) {
		form.Set(m[1], m[2])
	}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/login/password", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "busy") {
		t.Fatalf("locked database: %d %q\n%s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}
