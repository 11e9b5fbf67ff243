package e2e

// Helpers of the attack suite (attack_test.go). Every name starts with atk
// so that it cannot clash with helpers of the other e2e files.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// atkMetricsFlag makes a server print its private metrics address.
var atkMetricsFlag = []string{"--metrics-listen", "127.0.0.1:0"}

// atkArgs joins flag lists.
func atkArgs(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// atkFlag returns the value of the last occurrence of flag in args (the
// one the server's flag parser keeps).
func atkFlag(t testing.TB, args []string, flag string) string {
	t.Helper()
	v, ok := "", false
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			v, ok = args[i+1], true
		}
	}
	if !ok {
		t.Fatalf("flag %s not among %q", flag, args)
	}
	return v
}

// atkIntFlag is atkFlag for an integer flag.
func atkIntFlag(t testing.TB, args []string, flag string) int {
	t.Helper()
	n, err := strconv.Atoi(atkFlag(t, args, flag))
	if err != nil {
		t.Fatalf("flag %s: %v", flag, err)
	}
	return n
}

// atkDurFlag is atkFlag for a duration flag.
func atkDurFlag(t testing.TB, args []string, flag string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(atkFlag(t, args, flag))
	if err != nil {
		t.Fatalf("flag %s: %v", flag, err)
	}
	return d
}

var atkMetricsRe = regexp.MustCompile(`idp metrics on (http://\S+/metrics)`)

// atkMetricsURL is the metrics address the running process printed (the
// last one: a restarted process prints a new one).
func atkMetricsURL(t testing.TB, s *Server) string {
	t.Helper()
	m := atkMetricsRe.FindAllStringSubmatch(s.Stderr(), -1)
	if len(m) == 0 {
		t.Fatalf("server printed no metrics address (start it with atkMetricsFlag):\n%s", s.Stderr())
	}
	return m[len(m)-1][1]
}

// atkMetrics scrapes the server's metrics into name{labels} → value.
func atkMetrics(t testing.TB, s *Server) map[string]float64 {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(atkMetricsURL(t, s))
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape metrics: status %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// atkAttempts is the key of idp_auth_attempts_total for factor and result.
func atkAttempts(factor, result string) string {
	return fmt.Sprintf(`idp_auth_attempts_total{factor=%q,result=%q}`, factor, result)
}

// atkFactor is one factor row of `idp user show --json`.
type atkFactor struct {
	Factor      string `json:"factor"`
	Failures    int    `json:"failures"`
	Locked      bool   `json:"locked"`
	LockedUntil string `json:"locked_until"`
	HardLocked  bool   `json:"hard_locked"`
	// BudgetUsed is the second-factor budget's level.
	BudgetUsed float64 `json:"budget_used"`
}

// atkUserState is the output of `idp user show --json`.
type atkUserState struct {
	ID       string      `json:"id"`
	Username string      `json:"username"`
	Factors  []atkFactor `json:"factors"`
	Devices  []struct {
		Created string `json:"created"`
	} `json:"devices"`
}

// F returns the row of factor (zero when none is recorded).
func (u atkUserState) F(factor string) atkFactor {
	for _, f := range u.Factors {
		if f.Factor == factor {
			return f
		}
	}
	return atkFactor{Factor: factor}
}

// atkShow runs `idp user show NAME --json`.
func atkShow(t testing.TB, db, name string) atkUserState {
	t.Helper()
	out := CLI(t, db, "", "user", "show", name, "--json")
	var u atkUserState
	if err := json.Unmarshal([]byte(out), &u); err != nil {
		t.Fatalf("user show output %q: %v", out, err)
	}
	return u
}

// atkEvent is one line of `idp audit --json`.
type atkEvent struct {
	Time     string `json:"time"`
	Event    string `json:"event"`
	UserID   string `json:"user_id"`
	Username string `json:"username"`
	IP       string `json:"ip"`
	Detail   string `json:"detail"`
}

// atkAudit runs `idp audit --json [--user U]`; events come oldest first.
func atkAudit(t testing.TB, db, user string) []atkEvent {
	t.Helper()
	args := []string{"audit", "--json"}
	if user != "" {
		args = append(args, "--user", user)
	}
	out := CLI(t, db, "", args...)
	var evs []atkEvent
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var e atkEvent
		if err := dec.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("audit output: %v\n%s", err, out)
		}
		evs = append(evs, e)
	}
	return evs
}

// atkCount counts the events of type typ.
func atkCount(evs []atkEvent, typ string) int {
	n := 0
	for _, e := range evs {
		if e.Event == typ {
			n++
		}
	}
	return n
}

// atkOfType returns the events of type typ, oldest first.
func atkOfType(evs []atkEvent, typ string) []atkEvent {
	var out []atkEvent
	for _, e := range evs {
		if e.Event == typ {
			out = append(out, e)
		}
	}
	return out
}

// atkWrongCodes returns n distinct six-digit codes that are not u's code
// for any time step within ±3 steps of now, so they stay wrong for the
// whole test even across a step boundary.
func atkWrongCodes(u User, n int) []string {
	now := time.Now()
	valid := map[string]bool{}
	for k := -3; k <= 3; k++ {
		valid[u.Code(now.Add(time.Duration(k)*30*time.Second))] = true
	}
	seen := map[string]bool{}
	var out []string
	for i := 0; len(out) < n && i < 10*n+100; i++ {
		c := fmt.Sprintf("%06d", mrand.IntN(1000000))
		if valid[c] || seen[c] {
			continue
		}
		seen[c] = true
		out = append(out, c)
	}
	return out
}

// atkDo sends req from b and returns the page or the transport error
// (safe in goroutines: it never calls t.Fatal).
func atkDo(b *Browser, req *http.Request) (Page, error) {
	resp, err := b.Client.Do(req)
	if err != nil {
		return Page{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Page{}, err
	}
	p := Page{Status: resp.StatusCode, Header: resp.Header, Body: string(body), Location: resp.Header.Get("Location")}
	if p.Location != "" {
		if u, err := req.URL.Parse(p.Location); err == nil {
			p.Location = u.String()
		}
	}
	return p, nil
}

// atkFormRequest builds a same-origin form POST with extra headers.
func atkFormRequest(u string, form url.Values, hdr http.Header) *http.Request {
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	return req
}

// atkPost is Browser.Post with extra headers.
func atkPost(t testing.TB, b *Browser, u string, form url.Values, hdr http.Header) Page {
	t.Helper()
	p, err := atkDo(b, atkFormRequest(u, form, hdr))
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	return p
}

// atkTOTPForm is the TOTP form of flow f with code.
func atkTOTPForm(f *Flow, code string) url.Values {
	return url.Values{"id": {f.Form.Get("id")}, "csrf": {f.Form.Get("csrf")}, "code": {code}}
}

// atkPasswordForm is the password form of flow f.
func atkPasswordForm(f *Flow, username, password string) url.Values {
	return url.Values{"id": {f.Form.Get("id")}, "csrf": {f.Form.Get("csrf")}, "username": {username}, "password": {password}}
}

// atkFrom returns a browser that shares b's cookies but dials from the
// loopback source address ip: the same session from another network.
func atkFrom(t testing.TB, b *Browser, ip string) *Browser {
	nb := NewBrowser(t, ip)
	nb.Jar = b.Jar
	nb.Client.Jar = b.Jar
	return nb
}

// atkToTOTP starts a flow in b on s, passes the password step for
// username (any spelling) and loads the TOTP form.
func atkToTOTP(t testing.TB, b *Browser, s *Server, c Client, username, password string) *Flow {
	t.Helper()
	f := b.StartFlow(s, c, AuthParams{})
	atkPasswordOK(t, f, username, password)
	return f
}

// atkPasswordOK passes the password step of f and loads the TOTP form.
func atkPasswordOK(t testing.TB, f *Flow, username, password string) {
	t.Helper()
	p := f.Password(username, password)
	if p.Status != http.StatusSeeOther {
		t.Fatalf("password step for %q: want 303, got %d\n%s", username, p.Status, p.Body)
	}
	page := f.B.Get(p.Location)
	if page.Status != http.StatusOK || !strings.Contains(page.Body, `autocomplete="one-time-code"`) {
		t.Fatalf("after the password step: want the TOTP form, got %d\n%s", page.Status, page.Body)
	}
	f.Form = Hidden(page.Body)
}

// atkRetryAfter parses a 429 answer's Retry-After in seconds.
func atkRetryAfter(t testing.TB, p Page) int {
	t.Helper()
	if p.Status != http.StatusTooManyRequests {
		t.Fatalf("want 429, got %d\n%s", p.Status, p.Body)
	}
	n, err := strconv.Atoi(p.Header.Get("Retry-After"))
	if err != nil || n < 1 {
		t.Fatalf("429 without a positive Retry-After (%q)", p.Header.Get("Retry-After"))
	}
	return n
}

// atkIsTOTPForm reports whether p is the TOTP form re-rendered.
func atkIsTOTPForm(p Page) bool { return strings.Contains(p.Body, `autocomplete="one-time-code"`) }

// atkIsPasswordForm reports whether p is the password form.
func atkIsPasswordForm(p Page) bool {
	return strings.Contains(p.Body, `autocomplete="current-password"`)
}

// atkHasCode reports whether a redirect carries an authorization code.
func atkHasCode(location string) bool {
	u, err := url.Parse(location)
	if err != nil {
		return strings.Contains(location, "code=")
	}
	return u.Query().Get("code") != ""
}

// atkStatuses renders a status histogram for messages.
func atkStatuses(m map[int]int) string {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%d×%d ", m[k], k)
	}
	return strings.TrimSpace(b.String())
}

// atkMedian returns the median of ds.
func atkMedian(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// atkBarrier runs n functions in goroutines released at the same moment
// and waits for them, at most limit.
func atkBarrier(t testing.TB, n int, limit time.Duration, fn func(i int)) {
	t.Helper()
	start := make(chan struct{})
	ready := make(chan struct{}, n)
	done := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			defer func() { done <- struct{}{} }()
			ready <- struct{}{}
			<-start
			fn(i)
		}(i)
	}
	for i := 0; i < n; i++ {
		<-ready
	}
	close(start)
	deadline := time.After(limit)
	for i := 0; i < n; i++ {
		select {
		case <-done:
		case <-deadline:
			t.Fatalf("%d of %d concurrent requests still running after %s", n-i, n, limit)
		}
	}
}
