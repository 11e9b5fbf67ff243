package op

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/login"
)

// TestLabelsArePerClassNotPerPerson: after sign-ins, failures and
// refusals, no metric label carries a user, a username, a client, an
// address or anything else a person sent: every label name is one of a
// fixed set, and no label value is any of those strings
// (docs/THREAT-MODEL.md rule 13).
func TestLabelsArePerClassNotPerPerson(t *testing.T) {
	e := newTestEnv(t, nil)
	f := startFlow(t, e)
	id := f.form.Get("id")
	f.post(t, "/login/password", url.Values{"username": {"nobody-at-all"}, "password": {"hunter2-guess"}})
	f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"correct horse"}})
	f.load(t, e.ts.URL+login.URL(id))
	f.post(t, "/login/totp", url.Values{"code": {"000000"}})
	f.post(t, "/login/totp", url.Values{"code": {e.annCode(t, time.Now())}})
	get(t, e.browser(), e.ts.URL+"/authorize?client_id=someone-elses-app&redirect_uri=https://evil.example/cb")
	w := httptest.NewRecorder()
	e.srv.MetricsHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := w.Body.String()
	if !strings.Contains(body, `idp_auth_attempts_total{factor="totp",result="ok"} 1`) {
		t.Fatalf("the scrape does not show the sign-in:\n%s", body)
	}
	allowed := map[string]bool{"factor": true, "result": true, "event": true, "class": true, "code": true, "outcome": true,
		"le": true, "quantile": true, "version": true} // the last three: histogram buckets, summaries, go_info
	label := regexp.MustCompile(`([a-z_]+)="([^"]*)"`)
	personal := []string{"ann", "nobody-at-all", "hunter2-guess", e.annID(t), "app", "someone-elses-app", "evil.example", "127.0.0.1", id}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, m := range label.FindAllStringSubmatch(line, -1) {
			if !allowed[m[1]] {
				t.Errorf("label %q in %s", m[1], line)
			}
			for _, p := range personal {
				if m[2] == p || strings.Contains(m[2], p) && len(p) > 3 {
					t.Errorf("label value %q (%s) in %s", m[2], p, line)
				}
			}
		}
	}
}
