package op

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

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
	e := newTestEnvOn(t, nil, func(st storage.Store) storage.Store { return busyStore{st} })
	ts := e.ts
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
