package e2e

// The attack suite: every attack of docs/THREAT-MODEL.md, run against the
// real binary over real sockets, each of which must fail. Limits are read
// back from the flags each test passes; nothing else is hard-coded.

import (
	"bytes"
	"database/sql"
	"fmt"
	"html"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// atkLockArgs are TOTP and password policies whose locks outlast any test
// that does not wait for an expiry on purpose.
func atkLockArgs(totpL, pwL int) []string {
	return []string{
		"--totp-max-failures", fmt.Sprint(totpL), "--totp-lock", "60s", "--totp-lock-max", "5m", "--totp-hard-limit", "40",
		"--password-max-failures", fmt.Sprint(pwL), "--password-lock", "60s", "--password-lock-max", "5m", "--password-hard-limit", "100",
	}
}

// TestAttackTOTPBruteForce (docs/THREAT-MODEL.md attack #1, R-A1, R-A10): after a correct
// password, sequential wrong codes are evaluated at most L times; then the
// account answers 429 with Retry-After, even to the correct code, and
// nothing more is evaluated.
func TestAttackTOTPBruteForce(t *testing.T) {
	t.Parallel()
	args := atkArgs(atkMetricsFlag, atkLockArgs(4, 10))
	L := atkIntFlag(t, args, "--totp-max-failures")
	lock := atkDurFlag(t, args, "--totp-lock")
	s := StartServer(t, args...)
	u := AddUser(t, s.DB, "alice", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	f := atkToTOTP(t, NewBrowser(t, ""), s, c, u.Name, u.Password)

	guesses := atkWrongCodes(u, 3*L)
	n401, first429 := 0, -1
	for i, code := range guesses {
		p := f.TOTP(code)
		switch p.Status {
		case http.StatusUnauthorized:
			if first429 >= 0 {
				t.Fatalf("guess %d was evaluated (401) after the lock began at guess %d", i+1, first429+1)
			}
			if !atkIsTOTPForm(p) {
				t.Fatalf("a wrong code must re-render the TOTP form:\n%s", p.Body)
			}
			n401++
		case http.StatusTooManyRequests:
			if first429 < 0 {
				first429 = i
			}
			if ra := atkRetryAfter(t, p); ra > int(lock/time.Second) {
				t.Errorf("Retry-After %d s exceeds the configured first lock %s", ra, lock)
			}
			if !strings.Contains(p.Body, "You can try again in about") {
				t.Errorf("the locked page does not say when to retry:\n%s", p.Body)
			}
		default:
			t.Fatalf("guess %d: unexpected status %d\n%s", i+1, p.Status, p.Body)
		}
	}
	if n401 != L || first429 != L {
		t.Fatalf("%d guesses: %d evaluated (401) and the first 429 at guess %d; want exactly L=%d evaluated, then 429", len(guesses), n401, first429+1, L)
	}
	if p := f.TOTP(u.Code(time.Now())); p.Status != http.StatusTooManyRequests {
		t.Fatalf("the correct code while locked: want 429, got %d\n%s", p.Status, p.Body)
	}
	refused := len(guesses) - L + 1

	st := atkShow(t, s.DB, u.Name).F("totp")
	if st.Failures != L || !st.Locked {
		t.Errorf("user show: totp failures %d locked %t, want %d and locked", st.Failures, st.Locked, L)
	}
	evs := atkAudit(t, s.DB, u.Name)
	if n := atkCount(evs, "totp_failed"); n != L {
		t.Errorf("audit: %d totp_failed, want %d", n, L)
	}
	if n := atkCount(evs, "lock_started"); n != 1 {
		t.Errorf("audit: %d lock_started, want 1", n)
	}
	if n := atkCount(evs, "locked_refused"); n != refused {
		t.Errorf("audit: %d locked_refused, want %d", n, refused)
	}
	m := atkMetrics(t, s)
	for result, want := range map[string]int{"evaluated": L, "failed": L, "locked": refused, "ok": 0} {
		if got := m[atkAttempts("totp", result)]; got != float64(want) {
			t.Errorf("metrics totp %s = %v, want %d", result, got, want)
		}
	}

	// The operator unlock is the way out; then the correct code works.
	CLI(t, s.DB, "", "user", "unlock", u.Name)
	p := f.TOTP(u.Code(time.Now()))
	if p.Status != http.StatusSeeOther {
		t.Fatalf("after idp user unlock the correct code: want 303, got %d\n%s", p.Status, p.Body)
	}
	f.CodeFrom(f.Follow(p))
	t.Logf("L=%d: %d wrong codes → %d×401 then %d×429; correct code while locked 429; metrics evaluated=%d", L, len(guesses), n401, len(guesses)-n401, L)
}

// TestAttackTOTPWaitOut (docs/THREAT-MODEL.md rule 9, R-A9): an attacker who waits
// out every lock gets one evaluated guess per lock, the locks are capped at
// --totp-lock-max, and at --totp-hard-limit the account stays locked past
// any lock duration until an operator unlocks it.
func TestAttackTOTPWaitOut(t *testing.T) {
	t.Parallel()
	args := atkArgs(atkMetricsFlag, []string{"--totp-max-failures", "2", "--totp-lock", "2s", "--totp-lock-max", "2s", "--totp-hard-limit", "4"})
	L := atkIntFlag(t, args, "--totp-max-failures")
	maxLock := atkDurFlag(t, args, "--totp-lock-max")
	hard := atkIntFlag(t, args, "--totp-hard-limit")
	s := StartServer(t, args...)
	u := AddUser(t, s.DB, "alice", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	f := atkToTOTP(t, NewBrowser(t, ""), s, c, u.Name, u.Password)
	wrong := atkWrongCodes(u, hard)
	fail := func(i int) {
		t.Helper()
		if p := f.TOTP(wrong[i]); p.Status != http.StatusUnauthorized {
			t.Fatalf("failure %d: want 401, got %d", i+1, p.Status)
		}
	}
	for i := 0; i < L; i++ {
		fail(i)
	}
	var ras []int
	for i := L; i < hard; i++ {
		// Locked: the correct code is refused; wait, then one guess.
		p := f.TOTP(u.Code(time.Now()))
		ra := atkRetryAfter(t, p)
		if ra > int(maxLock/time.Second) {
			t.Errorf("after %d failures Retry-After %d s exceeds --totp-lock-max %s", i, ra, maxLock)
		}
		ras = append(ras, ra)
		time.Sleep(time.Duration(ra) * time.Second)
		for j := 0; j < 8 && atkShow(t, s.DB, u.Name).F("totp").Locked; j++ {
			time.Sleep(250 * time.Millisecond)
		}
		fail(i)
	}
	p := f.TOTP(u.Code(time.Now()))
	if p.Status != http.StatusTooManyRequests || !strings.Contains(p.Body, "administrator") {
		t.Fatalf("at the hard limit: want 429 naming the administrator, got %d\n%s", p.Status, p.Body)
	}
	if st := atkShow(t, s.DB, u.Name).F("totp"); !st.HardLocked || st.Failures != hard {
		t.Fatalf("user show: %+v, want hard-locked at %d failures", st, hard)
	}
	time.Sleep(maxLock + time.Second)
	if p := f.TOTP(u.Code(time.Now())); p.Status != http.StatusTooManyRequests {
		t.Fatalf("hard lock after waiting longer than --totp-lock-max: want 429, got %d", p.Status)
	}
	if got := atkMetrics(t, s)[atkAttempts("totp", "evaluated")]; got != float64(hard) {
		t.Errorf("metrics totp evaluated = %v, want the hard limit %d", got, hard)
	}
	CLI(t, s.DB, "", "user", "unlock", u.Name)
	p = f.TOTP(u.Code(time.Now()))
	if p.Status != http.StatusSeeOther {
		t.Fatalf("after idp user unlock: want 303, got %d", p.Status)
	}
	f.CodeFrom(f.Follow(p))
	t.Logf("L=%d hard=%d: waited out locks with Retry-After %v (cap %s), one guess each; hard lock outlived %s; evaluated=%d", L, hard, ras, maxLock, maxLock+time.Second, hard)
}

// atkSpoofHeaders are client-IP headers an attacker sets on every request.
func atkSpoofHeaders(fake string) http.Header {
	h := http.Header{}
	h.Set("X-Forwarded-For", fake)
	h.Set("Forwarded", "for="+fake)
	h.Set("X-Real-IP", fake)
	h.Set("True-Client-IP", fake)
	h.Set("X-Client-IP", fake)
	h.Set("CF-Connecting-IP", fake)
	h.Set("X-Cluster-Client-IP", fake)
	return h
}

// TestAttackIPRotation (docs/THREAT-MODEL.md attack #2–4, R-A5, R-P1, R-P2): every guess
// comes from another source address with other spoofed client-IP headers;
// the counter never resets and the lock comes at exactly L. The audit
// records the real peer unless the peer is a configured trusted proxy.
func TestAttackIPRotation(t *testing.T) {
	t.Parallel()
	t.Run("untrusted peers", func(t *testing.T) {
		t.Parallel()
		args := atkArgs(atkMetricsFlag, atkLockArgs(4, 10))
		L := atkIntFlag(t, args, "--totp-max-failures")
		s := StartServer(t, args...)
		u := AddUser(t, s.DB, "alice", "correct horse battery")
		c := AddClient(t, s.DB, "app")
		b0 := NewBrowser(t, "127.0.0.2")
		f := atkToTOTP(t, b0, s, c, u.Name, u.Password)
		var evaluatedFrom []string
		n429 := 0
		for i, code := range atkWrongCodes(u, 3*L) {
			ip := fmt.Sprintf("127.0.0.%d", 10+i)
			p := atkPost(t, atkFrom(t, b0, ip), s.URL+"/login/totp", atkTOTPForm(f, code), atkSpoofHeaders(fmt.Sprintf("198.51.100.%d", 1+i)))
			switch p.Status {
			case http.StatusUnauthorized:
				if n429 > 0 {
					t.Fatalf("guess %d from %s evaluated after the lock", i+1, ip)
				}
				evaluatedFrom = append(evaluatedFrom, ip)
			case http.StatusTooManyRequests:
				atkRetryAfter(t, p)
				n429++
			default:
				t.Fatalf("guess %d from %s: status %d\n%s", i+1, ip, p.Status, p.Body)
			}
		}
		if len(evaluatedFrom) != L {
			t.Fatalf("%d guesses from %d addresses: %d evaluated, want exactly L=%d", len(evaluatedFrom)+n429, len(evaluatedFrom)+n429, len(evaluatedFrom), L)
		}
		if m := atkMetrics(t, s); m[atkAttempts("totp", "evaluated")] != float64(L) {
			t.Errorf("metrics totp evaluated = %v, want %d", m[atkAttempts("totp", "evaluated")], L)
		}
		evs := atkAudit(t, s.DB, "")
		failed := atkOfType(evs, "totp_failed")
		if len(failed) != L {
			t.Fatalf("audit: %d totp_failed, want %d", len(failed), L)
		}
		for i, e := range failed {
			if e.IP != evaluatedFrom[i] {
				t.Errorf("audit totp_failed #%d: ip %q, want the real peer %s", i+1, e.IP, evaluatedFrom[i])
			}
		}
		for _, e := range evs {
			if strings.HasPrefix(e.IP, "198.51.100.") {
				t.Errorf("audit %s logged the spoofed address %s", e.Event, e.IP)
			}
		}
		t.Logf("L=%d: %d addresses with spoofed headers → %d evaluated, %d refused; audit ips %v", L, L+n429, L, n429, evaluatedFrom)
	})
	t.Run("behind a trusted proxy", func(t *testing.T) {
		t.Parallel()
		args := atkArgs(atkMetricsFlag, atkLockArgs(4, 10), []string{"--trusted-proxies", "127.0.0.1/32"})
		L := atkIntFlag(t, args, "--totp-max-failures")
		s := StartServer(t, args...)
		u := AddUser(t, s.DB, "alice", "correct horse battery")
		c := AddClient(t, s.DB, "app")
		proxy := NewBrowser(t, "127.0.0.1")
		f := atkToTOTP(t, proxy, s, c, u.Name, u.Password)
		var want []string
		n429 := 0
		for i, code := range atkWrongCodes(u, 3*L) {
			b, client := proxy, fmt.Sprintf("203.0.113.%d", 1+i)
			h := atkSpoofHeaders(fmt.Sprintf("192.0.2.%d", 1+i))
			// The proxy appends the address it saw; the left part is
			// whatever the client sent.
			h.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d, %s", 1+i, client))
			expect := client
			switch i {
			case 1: // an untrusted peer's X-Forwarded-For is ignored
				b = atkFrom(t, proxy, "127.0.0.7")
				expect = "127.0.0.7"
			case 2: // garbage is not believed: the walk stops at the proxy
				h.Set("X-Forwarded-For", "not-an-address")
				expect = "127.0.0.1"
			}
			p := atkPost(t, b, s.URL+"/login/totp", atkTOTPForm(f, code), h)
			switch p.Status {
			case http.StatusUnauthorized:
				if n429 > 0 {
					t.Fatalf("guess %d evaluated after the lock", i+1)
				}
				want = append(want, expect)
			case http.StatusTooManyRequests:
				n429++
			default:
				t.Fatalf("guess %d: status %d\n%s", i+1, p.Status, p.Body)
			}
		}
		if len(want) != L {
			t.Fatalf("%d evaluated, want exactly L=%d", len(want), L)
		}
		failed := atkOfType(atkAudit(t, s.DB, u.Name), "totp_failed")
		if len(failed) != L {
			t.Fatalf("audit: %d totp_failed, want %d", len(failed), L)
		}
		for i, e := range failed {
			if e.IP != want[i] {
				t.Errorf("audit totp_failed #%d: ip %q, want %s", i+1, e.IP, want[i])
			}
		}
		t.Logf("L=%d behind a trusted proxy: lock at %d; audit ips %v", L, len(want), want)
	})
}

// TestAttackSessionRotation (docs/THREAT-MODEL.md attack #8, R-A6, R-A7): every guess
// comes from a new cookie jar after a fresh, correct password step. The
// counter continues across flows, and a password success never resets it.
func TestAttackSessionRotation(t *testing.T) {
	t.Parallel()
	args := atkArgs(atkMetricsFlag, atkLockArgs(4, 10))
	L := atkIntFlag(t, args, "--totp-max-failures")
	s := StartServer(t, args...)
	u := AddUser(t, s.DB, "alice", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	wrong := atkWrongCodes(u, L)
	for i := 0; i < L-1; i++ {
		f := atkToTOTP(t, NewBrowser(t, fmt.Sprintf("127.0.0.%d", 30+i)), s, c, u.Name, u.Password)
		if p := f.TOTP(wrong[i]); p.Status != http.StatusUnauthorized {
			t.Fatalf("session %d: want 401, got %d", i+1, p.Status)
		}
		if st := atkShow(t, s.DB, u.Name).F("totp"); st.Failures != i+1 || st.Locked {
			t.Fatalf("after %d sessions: totp failures %d locked %t, want %d, not locked", i+1, st.Failures, st.Locked, i+1)
		}
	}
	// Yet another session; its password success leaves the count at L−1.
	f := atkToTOTP(t, NewBrowser(t, "127.0.0.40"), s, c, u.Name, u.Password)
	us := atkShow(t, s.DB, u.Name)
	if us.F("totp").Failures != L-1 || us.F("password").Failures != 0 {
		t.Fatalf("after a password success: totp failures %d (want %d, unchanged), password failures %d (want 0)", us.F("totp").Failures, L-1, us.F("password").Failures)
	}
	if p := f.TOTP(wrong[L-1]); p.Status != http.StatusUnauthorized {
		t.Fatalf("the L-th failure is still evaluated: want 401, got %d", p.Status)
	}
	if st := atkShow(t, s.DB, u.Name).F("totp"); st.Failures != L || !st.Locked {
		t.Fatalf("after L=%d failures in %d sessions: failures %d locked %t", L, L, st.Failures, st.Locked)
	}
	// A new session with the right password and the right code: refused.
	f = atkToTOTP(t, NewBrowser(t, "127.0.0.41"), s, c, u.Name, u.Password)
	if p := f.TOTP(u.Code(time.Now())); p.Status != http.StatusTooManyRequests {
		t.Fatalf("new session, correct code, account locked: want 429, got %d", p.Status)
	}
	if got := atkMetrics(t, s)[atkAttempts("totp", "evaluated")]; got != float64(L) {
		t.Errorf("metrics totp evaluated = %v, want %d", got, L)
	}
	t.Logf("L=%d: %d fresh sessions each with a password success; locked after failure %d; the next session's correct code got 429", L, L+1, L)
}

// TestAttackConcurrentGuesses (docs/THREAT-MODEL.md attack #7, R-A2): 200 wrong guesses
// from 20 sessions released at once. The claim-before-verify guard lets
// exactly L be evaluated; the rest are refused.
func TestAttackConcurrentGuesses(t *testing.T) {
	t.Parallel()
	const sessions, perSession = 20, 10
	args := atkArgs(atkMetricsFlag, atkLockArgs(5, 10))
	L := atkIntFlag(t, args, "--totp-max-failures")
	s := StartServer(t, args...)
	u := AddUser(t, s.DB, "alice", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	flows := make([]*Flow, sessions)
	for i := range flows {
		flows[i] = atkToTOTP(t, NewBrowser(t, fmt.Sprintf("127.0.0.%d", 50+i)), s, c, u.Name, u.Password)
	}
	n := sessions * perSession
	codes := atkWrongCodes(u, n)
	status := make([]int, n)
	errs := make([]error, n)
	wrongPage := make([]bool, n)
	atkBarrier(t, n, 60*time.Second, func(i int) {
		f := flows[i%sessions]
		p, err := atkDo(f.B, atkFormRequest(s.URL+"/login/totp", atkTOTPForm(f, codes[i]), nil))
		status[i], errs[i] = p.Status, err
		wrongPage[i] = p.Status == http.StatusUnauthorized && atkIsTOTPForm(p) && strings.Contains(p.Body, "not correct")
	})
	hist := map[int]int{}
	for i := range status {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		hist[status[i]]++
		if status[i] == http.StatusUnauthorized && !wrongPage[i] {
			t.Errorf("request %d: 401 without the wrong-code form", i)
		}
	}
	if hist[http.StatusUnauthorized] > L || hist[http.StatusUnauthorized]+hist[http.StatusTooManyRequests] != n {
		t.Fatalf("%d concurrent guesses: %s; want at most L=%d×401 and the rest 429", n, atkStatuses(hist), L)
	}
	if hist[http.StatusUnauthorized] != L {
		// Every guess was wrong and the lock outlasts the burst, so
		// exactly L claims can succeed.
		t.Errorf("%d×401, want exactly L=%d", hist[http.StatusUnauthorized], L)
	}
	m := atkMetrics(t, s)
	if ev := m[atkAttempts("totp", "evaluated")]; ev > float64(L) || ev != float64(hist[http.StatusUnauthorized]) {
		t.Errorf("metrics totp evaluated = %v, want ≤ L=%d and = the 401 count %d", ev, L, hist[http.StatusUnauthorized])
	}
	if st := atkShow(t, s.DB, u.Name).F("totp"); st.Failures != L || !st.Locked {
		t.Errorf("user show: totp failures %d locked %t, want %d, locked", st.Failures, st.Locked, L)
	}
	t.Logf("L=%d: %d concurrent guesses from %d sessions → %s; metrics evaluated=%v", L, n, sessions, atkStatuses(hist), m[atkAttempts("totp", "evaluated")])
}

// atkHorizon is when a 429 answer says the lock ends, seen at the moment
// the answer arrived.
func atkHorizon(t testing.TB, p Page) time.Time {
	t.Helper()
	return time.Now().Add(time.Duration(atkRetryAfter(t, p)) * time.Second)
}

// TestAttackRestart (docs/THREAT-MODEL.md attack #5, R-A3): lock, SIGKILL, restart on the
// same file: still locked, with the same horizon.
func TestAttackRestart(t *testing.T) {
	t.Parallel()
	args := atkArgs(atkMetricsFlag, atkLockArgs(3, 10))
	L := atkIntFlag(t, args, "--totp-max-failures")
	s := StartServer(t, args...)
	u := AddUser(t, s.DB, "alice", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	b := NewBrowser(t, "")
	f := atkToTOTP(t, b, s, c, u.Name, u.Password)
	for i, code := range atkWrongCodes(u, L) {
		if p := f.TOTP(code); p.Status != http.StatusUnauthorized {
			t.Fatalf("guess %d: want 401, got %d", i+1, p.Status)
		}
	}
	h1 := atkHorizon(t, f.TOTP(u.Code(time.Now())))
	before := atkShow(t, s.DB, u.Name).F("totp")

	s.Kill()
	s.Restart()
	b.Client.Transport.(*http.Transport).CloseIdleConnections()

	after := atkShow(t, s.DB, u.Name).F("totp")
	if !after.Locked || after.LockedUntil != before.LockedUntil || after.Failures != L {
		t.Fatalf("after SIGKILL and restart: %+v, before: %+v", after, before)
	}
	// The old flow (its auth request is in the database) and a new one.
	h2 := atkHorizon(t, f.TOTP(u.Code(time.Now())))
	f2 := atkToTOTP(t, NewBrowser(t, ""), s, c, u.Name, u.Password)
	h3 := atkHorizon(t, f2.TOTP(u.Code(time.Now())))
	for _, h := range []time.Time{h2, h3} {
		if d := h.Sub(h1); d.Abs() > 2*time.Second {
			t.Errorf("after restart the lock ends at %s, before at %s (off by %s, want ±2 s)", h.Format(time.RFC3339), h1.Format(time.RFC3339), d)
		}
	}
	m := atkMetrics(t, s)
	if m[atkAttempts("totp", "evaluated")] != 0 || m[atkAttempts("totp", "locked")] != 2 {
		t.Errorf("restarted process: evaluated %v locked %v, want 0 and 2", m[atkAttempts("totp", "evaluated")], m[atkAttempts("totp", "locked")])
	}
	t.Logf("L=%d: locked until %s before and after SIGKILL; horizons %s / %s / %s", L, before.LockedUntil, h1.Format(time.TimeOnly), h2.Format(time.TimeOnly), h3.Format(time.TimeOnly))
}

// TestAttackTwoProcesses (docs/THREAT-MODEL.md attack #6, R-A4): two processes on one
// database share the counter, whether each flow stays on one process or a
// single flow hops between them.
func TestAttackTwoProcesses(t *testing.T) {
	t.Parallel()
	args := atkArgs(atkMetricsFlag, atkLockArgs(4, 10))
	L := atkIntFlag(t, args, "--totp-max-failures")
	db := filepath.Join(t.TempDir(), "idp.db")
	s1 := StartServerOn(t, db, args...)
	ua := AddUser(t, db, "alice", "correct horse battery")
	ub := AddUser(t, db, "bob", "battery staple horse")
	c := AddClient(t, db, "app")
	s2 := StartServerOn(t, db, args...)
	servers := []*Server{s1, s2}
	evaluated := func() float64 {
		return atkMetrics(t, s1)[atkAttempts("totp", "evaluated")] + atkMetrics(t, s2)[atkAttempts("totp", "evaluated")]
	}

	// guess runs 3L guesses, the i-th through flows[i%len] on
	// servers[i%2], and returns the number evaluated (401).
	guess := func(u User, flows []*Flow, hop bool) int {
		n401, n429 := 0, 0
		for i, code := range atkWrongCodes(u, 3*L) {
			f := flows[i%len(flows)]
			if hop {
				f.S = servers[i%2]
			}
			p := f.TOTP(code)
			switch p.Status {
			case http.StatusUnauthorized:
				if n429 > 0 {
					t.Fatalf("guess %d on %s evaluated after the lock", i+1, f.S.URL)
				}
				n401++
			case http.StatusTooManyRequests:
				n429++
			default:
				t.Fatalf("guess %d on %s: status %d\n%s", i+1, f.S.URL, p.Status, p.Body)
			}
		}
		return n401
	}
	refusedEverywhere := func(u User, f *Flow) {
		for _, s := range servers {
			f.S = s
			if p := f.TOTP(u.Code(time.Now())); p.Status != http.StatusTooManyRequests {
				t.Errorf("%s after the lock, correct code: want 429, got %d", s.URL, p.Status)
			}
		}
	}

	// Each flow started on, and posted to, its own process.
	e0 := evaluated()
	fa1 := atkToTOTP(t, NewBrowser(t, "127.0.0.60"), s1, c, ua.Name, ua.Password)
	fa2 := atkToTOTP(t, NewBrowser(t, "127.0.0.61"), s2, c, ua.Name, ua.Password)
	n := guess(ua, []*Flow{fa1, fa2}, false)
	ea := evaluated() - e0
	if n != L || ea != float64(L) {
		t.Fatalf("flow per process: %d evaluated (401), metrics sum %v; want exactly L=%d", n, ea, L)
	}
	refusedEverywhere(ua, atkToTOTP(t, NewBrowser(t, "127.0.0.62"), s1, c, ua.Name, ua.Password))

	// One flow split across the processes: authorize on s1, password on
	// s2, guesses alternating.
	e0 = evaluated()
	f := NewBrowser(t, "127.0.0.63").StartFlow(s1, c, AuthParams{})
	f.S = s2
	atkPasswordOK(t, f, ub.Name, ub.Password)
	n = guess(ub, []*Flow{f}, true)
	eb := evaluated() - e0
	if n != L || eb != float64(L) {
		t.Fatalf("split flow: %d evaluated (401), metrics sum %v; want exactly L=%d", n, eb, L)
	}
	refusedEverywhere(ub, f)
	for _, name := range []string{ua.Name, ub.Name} {
		if st := atkShow(t, db, name).F("totp"); st.Failures != L || !st.Locked {
			t.Errorf("%s: totp failures %d locked %t, want %d, locked", name, st.Failures, st.Locked, L)
		}
	}
	t.Logf("L=%d: two processes; flow per process → %v evaluated in total, split flow → %v; both refuse afterwards", L, ea, eb)
}

// TestAttackReplay (docs/THREAT-MODEL.md attack #9, R-T1): a used code is refused in a
// second session within its window, and one valid code submitted
// concurrently from 20 sessions logs in exactly once.
func TestAttackReplay(t *testing.T) {
	t.Parallel()
	const concurrent = 20
	args := atkArgs(atkMetricsFlag, atkLockArgs(concurrent+5, 10))
	L := atkIntFlag(t, args, "--totp-max-failures")
	if L <= concurrent {
		t.Fatalf("--totp-max-failures %d must exceed %d so that no submission is refused by the lock", L, concurrent)
	}
	s := StartServer(t, args...)
	r1 := AddUser(t, s.DB, "rita", "correct horse battery")
	r2 := AddUser(t, s.DB, "rob", "battery staple horse")
	c := AddClient(t, s.DB, "app")

	// Sequential: session A uses the code, session B replays it.
	fa := atkToTOTP(t, NewBrowser(t, "127.0.0.90"), s, c, r1.Name, r1.Password)
	fb := atkToTOTP(t, NewBrowser(t, "127.0.0.91"), s, c, r1.Name, r1.Password)
	code := r1.Code(time.Now())
	p := fa.TOTP(code)
	if p.Status != http.StatusSeeOther {
		t.Fatalf("first use: want 303, got %d\n%s", p.Status, p.Body)
	}
	fa.CodeFrom(fa.Follow(p))
	p = fb.TOTP(code)
	if p.Status != http.StatusUnauthorized || !atkIsTOTPForm(p) {
		t.Fatalf("replay in a second session: want 401 with the form, got %d %s", p.Status, p.Location)
	}
	if cb := fb.B.Get(s.URL + "/authorize/callback?id=" + url.QueryEscape(fb.Form.Get("id"))); atkHasCode(cb.Location) {
		t.Fatalf("the replaying session got a code: %s", cb.Location)
	}
	if n := atkCount(atkAudit(t, s.DB, r1.Name), "totp_replay"); n != 1 {
		t.Errorf("audit: %d totp_replay, want 1", n)
	}

	// Concurrent: 20 sessions past the password step submit one code.
	flows := make([]*Flow, concurrent)
	for i := range flows {
		flows[i] = atkToTOTP(t, NewBrowser(t, fmt.Sprintf("127.0.0.%d", 100+i)), s, c, r2.Name, r2.Password)
	}
	code = r2.Code(time.Now())
	pages := make([]Page, concurrent)
	errs := make([]error, concurrent)
	atkBarrier(t, concurrent, 60*time.Second, func(i int) {
		pages[i], errs[i] = atkDo(flows[i].B, atkFormRequest(s.URL+"/login/totp", atkTOTPForm(flows[i], code), nil))
	})
	hist := map[int]int{}
	winner := -1
	for i, p := range pages {
		if errs[i] != nil {
			t.Fatalf("submission %d: %v", i, errs[i])
		}
		hist[p.Status]++
		if p.Status == http.StatusSeeOther {
			winner = i
		}
	}
	if hist[http.StatusSeeOther] != 1 || hist[http.StatusUnauthorized] != concurrent-1 {
		t.Fatalf("%d concurrent submissions of one code: %s; want 1×303 and %d×401", concurrent, atkStatuses(hist), concurrent-1)
	}
	wf := flows[winner]
	if !strings.Contains(pages[winner].Location, "/authorize/callback") {
		t.Fatalf("the success redirects to %s, want the callback", pages[winner].Location)
	}
	wf.CodeFrom(wf.Follow(pages[winner]))
	for i, f := range flows {
		if i == winner {
			continue
		}
		if cb := f.B.Get(s.URL + "/authorize/callback?id=" + url.QueryEscape(f.Form.Get("id"))); atkHasCode(cb.Location) {
			t.Fatalf("losing session %d got a code", i)
		}
	}
	evs := atkAudit(t, s.DB, r2.Name)
	if atkCount(evs, "totp_ok") != 1 || atkCount(evs, "totp_replay") != concurrent-1 {
		t.Errorf("audit: totp_ok %d totp_replay %d, want 1 and %d", atkCount(evs, "totp_ok"), atkCount(evs, "totp_replay"), concurrent-1)
	}
	m := atkMetrics(t, s)
	if m[atkAttempts("totp", "ok")] != 2 || m[atkAttempts("totp", "replay")] != concurrent {
		t.Errorf("metrics totp ok %v replay %v, want 2 and %d", m[atkAttempts("totp", "ok")], m[atkAttempts("totp", "replay")], concurrent)
	}
	t.Logf("replay in a 2nd session: 401; %d concurrent submissions: %s", concurrent, atkStatuses(hist))
}

// atkNoCodeFollow follows redirects within the provider from p (at most
// 5) and fails if any hop carries an authorization code. It returns the
// last page.
func atkNoCodeFollow(t testing.TB, b *Browser, s *Server, p Page, what string) Page {
	t.Helper()
	for i := 0; i < 5; i++ {
		if atkHasCode(p.Location) {
			t.Fatalf("%s: a code was issued: %s", what, p.Location)
		}
		if p.Status < 300 || p.Status > 399 || !strings.HasPrefix(p.Location, s.URL) {
			return p
		}
		p = b.Get(p.Location)
	}
	return p
}

// TestAttackSkipSecondStep (docs/THREAT-MODEL.md attack #10, R-O1, R-T5): after the
// password alone no path yields a code; flows are bound to their browser;
// the TOTP step checks the account recorded server-side, whatever the form
// says; steps cannot be taken out of order.
func TestAttackSkipSecondStep(t *testing.T) {
	t.Parallel()
	args := atkArgs(atkMetricsFlag, atkLockArgs(5, 10))
	s := StartServer(t, args...)
	victim := AddUser(t, s.DB, "victim", "amber lantern forty")
	mallory := AddUser(t, s.DB, "mallory", "quiet harbour ninety")
	c := AddClient(t, s.DB, "app")
	rp := NewRP(t, s, c)
	callback := func(id string) string { return s.URL + "/authorize/callback?id=" + url.QueryEscape(id) }

	t.Run("password only", func(t *testing.T) {
		b := NewBrowser(t, "")
		f := atkToTOTP(t, b, s, c, victim.Name, victim.Password)
		id := f.Form.Get("id")
		atkNoCodeFollow(t, b, s, b.Get(callback(id)), "callback after the password")
		if p := b.Get(s.URL + "/login/?id=" + url.QueryEscape(id)); !atkIsTOTPForm(p) {
			t.Fatalf("login page after the password: want the TOTP form, got %d", p.Status)
		}
		// Re-authorize in the same browser: a new request at the password.
		u, _ := AuthorizeURL(s, c, AuthParams{})
		p := atkNoCodeFollow(t, b, s, b.Get(u), "re-authorize")
		if !atkIsPasswordForm(p) {
			t.Fatalf("re-authorize: want the password form, got %d %s", p.Status, p.Location)
		}
		u, _ = AuthorizeURL(s, c, AuthParams{Extra: url.Values{"prompt": {"none"}}})
		p = atkNoCodeFollow(t, b, s, b.Get(u), "prompt=none")
		if !strings.Contains(p.Location, "error=login_required") {
			t.Errorf("prompt=none after the password only: want login_required, got %d %s", p.Status, p.Location)
		}
		// Empty, malformed and wrong codes: still no code.
		for _, code := range []string{"", "12345", "abcdef", "1234567"} {
			if p := f.TOTP(code); p.Status != http.StatusBadRequest {
				t.Errorf("malformed code %q: want 400, got %d", code, p.Status)
			}
		}
		if p := f.TOTP(atkWrongCodes(victim, 1)[0]); p.Status != http.StatusUnauthorized {
			t.Errorf("wrong code: want 401, got %d", p.Status)
		}
		atkNoCodeFollow(t, b, s, b.Get(callback(id)), "callback after a failed code")
		// A second password success does not advance the request either.
		if p := f.Password(victim.Name, victim.Password); p.Status != http.StatusSeeOther {
			t.Fatalf("password again: %d", p.Status)
		}
		atkNoCodeFollow(t, b, s, b.Get(callback(id)), "callback after two password successes")
	})

	t.Run("another browser's request", func(t *testing.T) {
		u := AddUser(t, s.DB, "walter", "velvet compass seven")
		b1 := NewBrowser(t, "127.0.0.81")
		f := atkToTOTP(t, b1, s, c, u.Name, u.Password)
		// The attacker has a flow of their own, so their browser holds a
		// valid flow cookie and form token, just not this request's.
		b2 := NewBrowser(t, "127.0.0.82")
		own := atkToTOTP(t, b2, s, c, mallory.Name, mallory.Password)
		code := u.Code(time.Now())
		forms := []url.Values{atkTOTPForm(f, code), atkTOTPForm(f, code)}
		forms[1].Set("csrf", own.Form.Get("csrf"))
		for i, form := range forms {
			p := b2.Post(s.URL+"/login/totp", form)
			if p.Status != http.StatusForbidden || atkHasCode(p.Location) || strings.Contains(p.Location, "/authorize/callback") {
				t.Fatalf("TOTP form of another browser's request (variant %d) with the right code: want 403, got %d %s", i, p.Status, p.Location)
			}
		}
		if p := b2.Get(s.URL + "/login/?id=" + url.QueryEscape(f.Form.Get("id"))); p.Status != http.StatusForbidden {
			t.Errorf("another browser's login page: want 403, got %d", p.Status)
		}
		atkNoCodeFollow(t, b2, s, b2.Get(callback(f.Form.Get("id"))), "another browser's callback")
		if st := atkShow(t, s.DB, u.Name).F("totp"); st.Failures != 0 {
			t.Fatalf("the refused posts moved the victim's counter to %d", st.Failures)
		}
		// Nothing was evaluated, so the owner can still use the same code.
		p := f.TOTP(code)
		if p.Status != http.StatusSeeOther {
			t.Fatalf("owner with the same code: want 303, got %d\n%s", p.Status, p.Body)
		}
		// Even when done, the request's callback is the owner's alone.
		atkNoCodeFollow(t, b2, s, b2.Get(callback(f.Form.Get("id"))), "another browser's callback of a done request")
		f.CodeFrom(f.Follow(p))
	})

	t.Run("tampered account fields", func(t *testing.T) {
		// Knows the victim's password, submits their own valid code and
		// names their own account in every field a naive server might read.
		b := NewBrowser(t, "")
		f := atkToTOTP(t, b, s, c, victim.Name, victim.Password)
		form := atkTOTPForm(f, mallory.Code(time.Now()))
		for _, k := range []string{"user", "username", "user_id", "userid", "sub", "account"} {
			form.Set(k, mallory.Name)
		}
		form.Set("user_id", mallory.ID)
		p := b.Post(s.URL+"/login/totp", form)
		if p.Status != http.StatusUnauthorized || atkHasCode(p.Location) {
			t.Fatalf("victim's flow, attacker's code, attacker named in the form: want 401, got %d %s", p.Status, p.Location)
		}
		atkNoCodeFollow(t, b, s, b.Get(callback(f.Form.Get("id"))), "callback after the tampered form")
		// The other way round: the attacker's own login, naming the victim,
		// yields a token for the attacker.
		b2 := NewBrowser(t, "")
		f2 := atkToTOTP(t, b2, s, c, mallory.Name, mallory.Password)
		form = atkTOTPForm(f2, mallory.Code(time.Now()))
		for _, k := range []string{"user", "username", "userid", "sub", "account"} {
			form.Set(k, victim.Name)
		}
		form.Set("user_id", victim.ID)
		p = b2.Post(s.URL+"/login/totp", form)
		if p.Status != http.StatusSeeOther {
			t.Fatalf("attacker's own login: want 303, got %d\n%s", p.Status, p.Body)
		}
		tok, err := rp.Exchange(f2, f2.CodeFrom(f2.Follow(p)))
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		if cl := rp.VerifyID(t, tok, f2); cl.Sub != mallory.ID {
			t.Fatalf("the ID token is for %s, want the attacker's own account %s (victim %s)", cl.Sub, mallory.ID, victim.ID)
		}
	})

	t.Run("steps out of order", func(t *testing.T) {
		u := AddUser(t, s.DB, "stagey", "marble orchard three")
		b := NewBrowser(t, "")
		f := b.StartFlow(s, c, AuthParams{})
		code := u.Code(time.Now())
		form := atkTOTPForm(f, code)
		form.Set("username", u.Name)
		form.Set("user_id", u.ID)
		p := b.Post(s.URL+"/login/totp", form)
		if p.Status == http.StatusOK || strings.Contains(p.Location, "/authorize/callback") {
			t.Fatalf("TOTP before the password: got %d %s", p.Status, p.Location)
		}
		if last := atkNoCodeFollow(t, b, s, p, "TOTP before the password"); !atkIsPasswordForm(last) {
			t.Errorf("TOTP before the password: want to land on the password form, got %d", last.Status)
		}
		atkNoCodeFollow(t, b, s, b.Get(callback(f.Form.Get("id"))), "callback before any step")
		if st := atkShow(t, s.DB, u.Name).F("totp"); st.Failures != 0 {
			t.Errorf("TOTP before the password moved the counter to %d", st.Failures)
		}
		// The code was not evaluated: the proper order still works.
		f.Login(u)
	})
}

// TestAttackPasswordBruteForce (docs/THREAT-MODEL.md attack #11, R-A9, R-A10): password
// guesses from rotating addresses meet per-account escalation; another
// account is unaffected; a locked answer computes no hash; the TOTP
// counter does not move.
func TestAttackPasswordBruteForce(t *testing.T) {
	t.Parallel()
	args := atkArgs(atkMetricsFlag, []string{
		"--password-max-failures", "3", "--password-lock", "2s", "--password-lock-max", "4s", "--password-hard-limit", "20",
		"--totp-max-failures", "5", "--hash-concurrency", "2",
	})
	P := atkIntFlag(t, args, "--password-max-failures")
	base := atkDurFlag(t, args, "--password-lock")
	maxLock := atkDurFlag(t, args, "--password-lock-max")
	s := StartServer(t, args...)
	alice := AddUser(t, s.DB, "alice", "correct horse battery")
	bob := AddUser(t, s.DB, "bob", "battery staple horse")
	c := AddClient(t, s.DB, "app")
	b0 := NewBrowser(t, "127.0.0.70")
	f := b0.StartFlow(s, c, AuthParams{})
	ip := 70
	guess := func(password string) (Page, time.Duration) {
		ip++
		b := atkFrom(t, b0, fmt.Sprintf("127.0.0.%d", ip))
		start := time.Now()
		p := atkPost(t, b, s.URL+"/login/password", atkPasswordForm(f, alice.Name, password), atkSpoofHeaders(fmt.Sprintf("198.51.100.%d", ip)))
		return p, time.Since(start)
	}
	wrong := func(i int) string { return fmt.Sprintf("wrong password %d", i) }
	var evalDur, lockedDur []time.Duration
	for i := 0; i < P; i++ {
		p, d := guess(wrong(i))
		if p.Status != http.StatusUnauthorized || !atkIsPasswordForm(p) {
			t.Fatalf("free failure %d: want 401 with the form, got %d", i+1, p.Status)
		}
		evalDur = append(evalDur, d)
	}
	// Locked: wrong and right passwords alike get 429 and cost no hash.
	h0 := atkMetrics(t, s)["idp_password_hashes_total"]
	ra1 := 0
	var horizon time.Time
	for i, pw := range []string{wrong(10), alice.Password, wrong(11), alice.Password, wrong(12)} {
		p, d := guess(pw)
		ra := atkRetryAfter(t, p)
		if ra > int(base/time.Second) {
			t.Errorf("first lock: Retry-After %d s exceeds --password-lock %s", ra, base)
		}
		if i == 0 {
			ra1, horizon = ra, time.Now().Add(time.Duration(ra)*time.Second)
		}
		lockedDur = append(lockedDur, d)
	}
	m := atkMetrics(t, s)
	if h1 := m["idp_password_hashes_total"]; h1 != h0 {
		t.Errorf("locked answers computed %v password hashes, want 0", h1-h0)
	}
	if me, ml := atkMedian(evalDur), atkMedian(lockedDur); ml*2 > me {
		t.Errorf("locked answers are not fast: median %s vs %s for an evaluated guess", ml, me)
	}
	if got := m[atkAttempts("password", "locked")]; got != 5 {
		t.Errorf("metrics password locked = %v, want 5", got)
	}
	// Another account is unaffected while alice is locked.
	fb := NewBrowser(t, "127.0.0.69").StartFlow(s, c, AuthParams{})
	fb.Login(bob)

	// Escalation: after the lock ends one more guess is evaluated and the
	// next lock is longer, up to --password-lock-max.
	waitUnlocked := func() {
		time.Sleep(time.Until(horizon))
		for i := 0; i < 12; i++ { // refused probes change nothing
			if st := atkShow(t, s.DB, alice.Name).F("password"); !st.Locked {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Fatal("the password lock did not expire")
	}
	ras := []int{ra1}
	for round := 0; round < 2; round++ {
		waitUnlocked()
		if p, _ := guess(wrong(20 + round)); p.Status != http.StatusUnauthorized {
			t.Fatalf("escalation round %d: after the lock the next guess is evaluated (401), got %d", round+1, p.Status)
		}
		p, _ := guess(wrong(30 + round))
		ra := atkRetryAfter(t, p)
		horizon = time.Now().Add(time.Duration(ra) * time.Second)
		ras = append(ras, ra)
	}
	if !(ras[1] > ras[0] && ras[1] <= 2*int(base/time.Second)) {
		t.Errorf("Retry-After sequence %v: the second lock must be longer than the first and at most 2×%s", ras, base)
	}
	if ras[2] > int(maxLock/time.Second) || ras[2] <= int(base/time.Second) {
		t.Errorf("Retry-After sequence %v: the third lock must stay escalated and be capped at %s", ras, maxLock)
	}
	us := atkShow(t, s.DB, alice.Name)
	if us.F("password").Failures != P+2 || us.F("totp").Failures != 0 || us.F("totp").Locked {
		t.Errorf("user show: password failures %d (want %d), totp failures %d locked %t (want 0, unlocked)",
			us.F("password").Failures, P+2, us.F("totp").Failures, us.F("totp").Locked)
	}
	if st := atkShow(t, s.DB, bob.Name); st.F("password").Failures != 0 || st.F("totp").Failures != 0 {
		t.Errorf("bob was affected: %+v", st.Factors)
	}
	// The operator can lift it; then alice logs in normally.
	CLI(t, s.DB, "", "user", "unlock", alice.Name)
	NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Login(alice)
	t.Logf("P=%d: %d free failures from %d addresses, Retry-After %v (lock %s doubling to %s); locked answers median %s vs %s evaluated, 0 hashes",
		P, P, ip-70, ras, base, maxLock, atkMedian(lockedDur), atkMedian(evalDur))
}

// TestAttackConcurrentPasswordGuesses (docs/THREAT-MODEL.md attack #7 on the first
// factor, docs/THREAT-MODEL.md R-A2): a burst of wrong passwords for one account released at
// once from many addresses is evaluated — and hashed — at most P times.
func TestAttackConcurrentPasswordGuesses(t *testing.T) {
	t.Parallel()
	const burst, sessions = 60, 12
	args := atkArgs(atkMetricsFlag, atkLockArgs(5, 4), []string{"--hash-concurrency", "2"})
	P := atkIntFlag(t, args, "--password-max-failures")
	s := StartServer(t, args...)
	u := AddUser(t, s.DB, "alice", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	flows := make([]*Flow, sessions)
	for i := range flows {
		flows[i] = NewBrowser(t, fmt.Sprintf("127.0.0.%d", 160+i)).StartFlow(s, c, AuthParams{})
	}
	h0 := atkMetrics(t, s)["idp_password_hashes_total"]
	status := make([]int, burst)
	errs := make([]error, burst)
	atkBarrier(t, burst, 60*time.Second, func(i int) {
		f := flows[i%sessions]
		var p Page
		p, errs[i] = atkDo(f.B, atkFormRequest(s.URL+"/login/password", atkPasswordForm(f, u.Name, fmt.Sprintf("guess %d", i)), nil))
		status[i] = p.Status
	})
	hist := map[int]int{}
	for i := range status {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		hist[status[i]]++
	}
	if hist[http.StatusUnauthorized] != P || hist[http.StatusTooManyRequests] != burst-P {
		t.Fatalf("%d concurrent wrong passwords: %s; want exactly P=%d×401 and the rest 429", burst, atkStatuses(hist), P)
	}
	m := atkMetrics(t, s)
	if h := m["idp_password_hashes_total"] - h0; h != float64(P) {
		t.Errorf("%v password hashes for the burst, want P=%d", h, P)
	}
	if st := atkShow(t, s.DB, u.Name).F("password"); st.Failures != P || !st.Locked {
		t.Errorf("user show: password failures %d locked %t, want %d, locked", st.Failures, st.Locked, P)
	}
	t.Logf("P=%d: %d concurrent wrong passwords from %d addresses → %s; %d hashes", P, burst, sessions, atkStatuses(hist), P)
}

// TestAttackHashingFlood (docs/THREAT-MODEL.md attack #12, R-S1): 200 concurrent password
// attempts for unknown users never run more hashes at once than
// --hash-concurrency, and a real user still gets in within a bounded wait.
// Not parallel: it measures the provider's CPU budget.
func TestAttackHashingFlood(t *testing.T) {
	const flood, browsers = 200, 20
	args := atkArgs(atkMetricsFlag, []string{"--hash-concurrency", "2"})
	capacity := atkIntFlag(t, args, "--hash-concurrency")
	s := StartServer(t, args...)
	u := AddUser(t, s.DB, "alice", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	bs := make([]*Browser, browsers)
	for i := range bs {
		bs[i] = NewBrowser(t, fmt.Sprintf("127.0.0.%d", 130+i))
	}
	flows := make([]*Flow, flood)
	for i := range flows {
		flows[i] = bs[i%browsers].StartFlow(s, c, AuthParams{})
	}
	rf := NewBrowser(t, "127.0.0.200").StartFlow(s, c, AuthParams{})
	h0 := atkMetrics(t, s)["idp_password_hashes_total"]

	status := make([]int, flood)
	errs := make([]error, flood)
	start := make(chan struct{})
	var ready, done sync.WaitGroup
	for i := 0; i < flood; i++ {
		ready.Add(1)
		done.Add(1)
		go func(i int) {
			defer done.Done()
			f := flows[i]
			req := atkFormRequest(s.URL+"/login/password", atkPasswordForm(f, "ghost-"+randString(), "guess "+randString()), nil)
			ready.Done()
			<-start
			p, err := atkDo(f.B, req)
			status[i], errs[i] = p.Status, err
		}(i)
	}
	ready.Wait()
	floodStart := time.Now()
	close(start)
	// The real user arrives while the queue is full.
	time.Sleep(100 * time.Millisecond)
	const bound = 20 * time.Second
	t0 := time.Now()
	tries := 0
	var p Page
	for tries < 5 && time.Since(t0) < bound {
		tries++
		p = rf.Password(u.Name, u.Password)
		if p.Status != http.StatusServiceUnavailable {
			break
		}
	}
	wait := time.Since(t0)
	if p.Status != http.StatusSeeOther {
		t.Fatalf("real user during the flood: want 303 within %s, got %d after %s and %d tries", bound, p.Status, wait, tries)
	}
	page := rf.B.Get(p.Location)
	if !atkIsTOTPForm(page) {
		t.Fatalf("real user after the password: want the TOTP form, got %d", page.Status)
	}
	rf.Form = Hidden(page.Body)
	rf.CodeFrom(rf.Follow(rf.TOTP(u.Code(time.Now()))))
	if wait > bound {
		t.Errorf("real user waited %s for the password step, bound %s", wait, bound)
	}
	finished := make(chan struct{})
	go func() { done.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(60 * time.Second):
		t.Fatal("flood requests still running after 60 s")
	}
	floodDur := time.Since(floodStart)
	hist := map[int]int{}
	for i := range status {
		if errs[i] != nil {
			t.Fatalf("flood request %d: %v", i, errs[i])
		}
		hist[status[i]]++
	}
	if hist[http.StatusUnauthorized]+hist[http.StatusServiceUnavailable] != flood {
		t.Errorf("flood answers %s: want only 401 (wrong) or 503 (busy)", atkStatuses(hist))
	}
	m := atkMetrics(t, s)
	peak, capM := m["idp_password_hashes_in_flight_max"], m["idp_password_hash_capacity"]
	if capM != float64(capacity) || peak > capM || peak < 1 {
		t.Errorf("hashes in flight max %v, capacity %v; want ≤ capacity = --hash-concurrency %d", peak, capM, capacity)
	}
	hashes := m["idp_password_hashes_total"] - h0
	if hashes > float64(flood+1) {
		t.Errorf("%v hashes for %d attempts", hashes, flood+1)
	}
	t.Logf("capacity %d: %d concurrent unknown-user attempts → %s in %s; peak in flight %v, %v hashes; real user's password step took %s (%d tries)",
		capacity, flood, atkStatuses(hist), floodDur.Round(time.Millisecond), peak, hashes, wait.Round(time.Millisecond), tries)
}

// atkNormalise removes the per-request parts of a password page: hidden
// id and csrf values and the echoed username.
func atkNormalise(body, username string) string {
	for _, v := range Hidden(body) {
		body = strings.ReplaceAll(body, `value="`+html.EscapeString(v[0])+`"`, `value="TOKEN"`)
	}
	return strings.ReplaceAll(body, `value="`+html.EscapeString(username)+`"`, `value="USERNAME"`)
}

// TestAttackEnumeration (docs/THREAT-MODEL.md attack #13, R-W5): an unknown user and a
// wrong password get the same status and page, and take the same time.
// Not parallel: it measures latency.
func TestAttackEnumeration(t *testing.T) {
	const samples = 40
	args := atkArgs(atkMetricsFlag, []string{"--password-max-failures", "90", "--password-hard-limit", "100", "--hash-concurrency", "2"})
	if P := atkIntFlag(t, args, "--password-max-failures"); P <= samples+3 {
		t.Fatalf("--password-max-failures %d must exceed the %d samples of a round so that the known user never locks", P, samples)
	}
	s := StartServer(t, args...)
	known := AddUser(t, s.DB, "alice", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	const unknown = "mallory"
	fk := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	fu := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	try := func(f *Flow, user string) (Page, time.Duration) {
		start := time.Now()
		p := f.Password(user, "wrong password")
		return p, time.Since(start)
	}
	var pageK, pageU string
	check := func(p Page, user string, page *string) {
		t.Helper()
		if p.Status != http.StatusUnauthorized {
			t.Fatalf("%s: want 401, got %d", user, p.Status)
		}
		norm := atkNormalise(p.Body, user)
		if *page == "" {
			*page = norm
		} else if norm != *page {
			t.Fatalf("the page for %s varies between attempts", user)
		}
	}
	// round measures samples interleaved pairs (the order alternates) and
	// returns the medians and the median of the paired differences, which
	// cancels load that drifts over the round.
	round := func() (mk, mu, md time.Duration) {
		CLI(t, s.DB, "", "user", "unlock", known.Name) // keeps the known user below its limit
		for i := 0; i < 3; i++ {                       // warm connections and caches
			try(fk, known.Name)
			try(fu, unknown)
		}
		var dk, du, dd []time.Duration
		for i := 0; i < samples; i++ {
			var pk, pu Page
			var tk, tu time.Duration
			if i%2 == 0 {
				pk, tk = try(fk, known.Name)
				pu, tu = try(fu, unknown)
			} else {
				pu, tu = try(fu, unknown)
				pk, tk = try(fk, known.Name)
			}
			check(pk, known.Name, &pageK)
			check(pu, unknown, &pageU)
			dk, du, dd = append(dk, tk), append(du, tu), append(dd, tk-tu)
		}
		return atkMedian(dk), atkMedian(du), atkMedian(dd)
	}
	// Both paths run one argon2id hash (tens of ms at m=19 MiB, t=2) under
	// the same hashing semaphore; the known-user path adds one short SQLite
	// write (the attempt claim, well under 1 ms). The real difference is a
	// few per cent; an early return for unknown users (no hash) would be
	// ~95 %. On 2 shared cores a round can still be pushed past 10 % by
	// another process, so up to three rounds are measured and one within
	// 10 % passes: random load does not repeat, a systematic difference of
	// more than 10 % shows in every round.
	var mk, mu, md time.Duration
	var rel float64
	var rounds []string
	for r := 0; r < 3; r++ {
		mk, mu, md = round()
		rel = math.Abs(float64(md)) / float64(min(mk, mu))
		rounds = append(rounds, fmt.Sprintf("%s/%s (%.1f%%)", mk.Round(10*time.Microsecond), mu.Round(10*time.Microsecond), 100*rel))
		if rel <= 0.10 {
			break
		}
	}
	if pageK != pageU {
		t.Fatalf("unknown user and wrong password get different pages:\n--- wrong password\n%s\n--- unknown user\n%s", pageK, pageU)
	}
	if !strings.Contains(pageK, `value="TOKEN"`) || !strings.Contains(pageK, `value="USERNAME"`) {
		t.Fatalf("normalisation found no tokens to remove; page:\n%s", pageK)
	}
	if rel > 0.10 {
		t.Errorf("median latency differences known − unknown exceed 10%% in every round (known/unknown medians: %v)", rounds)
	}
	st := atkShow(t, s.DB, known.Name).F("password")
	t.Logf("%d interleaved pairs per round: same 401 page; medians wrong password/unknown user (paired difference) %v; known user's password failures now %d",
		samples, rounds, st.Failures)
}

// TestAttackUsernameVariants (docs/THREAT-MODEL.md rule 1): every spelling of one
// username hits one account and therefore one counter.
func TestAttackUsernameVariants(t *testing.T) {
	t.Parallel()
	args := atkArgs(atkMetricsFlag, []string{
		"--password-max-failures", "6", "--password-lock", "60s", "--password-lock-max", "5m", "--password-hard-limit", "20",
		"--totp-max-failures", "5", "--totp-lock", "60s", "--totp-lock-max", "5m",
	})
	P := atkIntFlag(t, args, "--password-max-failures")
	s := StartServer(t, args...)
	u := AddUser(t, s.DB, "alice", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	spellings := []string{
		"Alice", "ALICE", " alice", "alice\t", "ａｌｉｃｅ", "ＡＬＩＣＥ",
		"\U0001d41a\U0001d425\U0001d422\U0001d41c\U0001d41e", // mathematical bold
		"\u24d0\u24db\u24d8\u24d2\u24d4",                     // circled letters
		"Ａlice ",
	}
	if len(spellings) <= P {
		t.Fatalf("need more than %d spellings", P)
	}
	// Second factor: logins under two spellings share the TOTP counter.
	wrong := atkWrongCodes(u, 2)
	for i, name := range []string{"ＡＬＩＣＥ", " Alice "} {
		f := atkToTOTP(t, NewBrowser(t, ""), s, c, name, u.Password)
		if p := f.TOTP(wrong[i]); p.Status != http.StatusUnauthorized {
			t.Fatalf("totp via %q: want 401, got %d", name, p.Status)
		}
	}
	if st := atkShow(t, s.DB, u.Name).F("totp"); st.Failures != 2 {
		t.Fatalf("totp failures via two spellings: %d, want 2", st.Failures)
	}
	// Password: each spelling adds one failure to the same account.
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	for i, name := range spellings[:P] {
		p := f.Password(name, "wrong password")
		if p.Status != http.StatusUnauthorized {
			t.Fatalf("spelling %q: want 401, got %d", name, p.Status)
		}
		if st := atkShow(t, s.DB, u.Name).F("password"); st.Failures != i+1 {
			t.Fatalf("after %q: password failures %d, want %d (spellings must share one counter)", name, st.Failures, i+1)
		}
	}
	for _, name := range spellings[P:] {
		for _, pw := range []string{"wrong password", u.Password} {
			if p := f.Password(name, pw); p.Status != http.StatusTooManyRequests {
				t.Errorf("after %d failures, %q: want 429, got %d", P, name, p.Status)
			}
		}
	}
	st := atkShow(t, s.DB, u.Name).F("password")
	if st.Failures != P || !st.Locked {
		t.Errorf("password failures %d locked %t, want %d, locked", st.Failures, st.Locked, P)
	}
	t.Logf("P=%d: %d spellings → one counter, locked at %d; totp counter shared across 2 spellings", P, len(spellings), st.Failures)
}

// atkScrubLog removes log attributes whose digits are not request data
// (timestamps and durations), so a six-digit code can only match what a
// request put there.
var atkScrubLog = regexp.MustCompile(`(time|dur)=\S+`)

// TestAuditNoSecrets (docs/THREAT-MODEL.md R-L1, ASVS 16.2.5): after the attacks, neither the
// database files nor the server's log (at debug level) contain a submitted
// password or code — while the audit trail does record the events.
func TestAuditNoSecrets(t *testing.T) {
	t.Parallel()
	args := atkArgs(atkMetricsFlag, []string{"--log-level", "debug"}, atkLockArgs(3, 3))
	L := atkIntFlag(t, args, "--totp-max-failures")
	P := atkIntFlag(t, args, "--password-max-failures")
	s := StartServer(t, args...)
	tag := strings.NewReplacer("-", "", "_", "").Replace(randString())
	alice := AddUser(t, s.DB, "alice", "Lantern-A-"+tag)
	bob := AddUser(t, s.DB, "bob", "Compass-B-"+tag)
	c := AddClient(t, s.DB, "app")
	passwords := []string{alice.Password, bob.Password}
	var codes []string

	// Wrong passwords, an unknown user, a password lock.
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	for i := 0; i < P+1; i++ {
		pw := fmt.Sprintf("WrongPw%d-%s", i, tag)
		passwords = append(passwords, pw)
		f.Password(bob.Name, pw)
	}
	ghost := "GhostPw-" + tag
	passwords = append(passwords, ghost)
	f.Password("ghost", ghost)
	// A login, a replay, wrong codes, a TOTP lock, the right code refused.
	fa := NewBrowser(t, "").StartFlow(s, c, AuthParams{Scope: "openid profile offline_access"})
	code := alice.Code(time.Now())
	codes = append(codes, code)
	atkPasswordOK(t, fa, alice.Name, alice.Password)
	authCode := fa.CodeFrom(fa.Follow(fa.TOTP(code)))
	tok, err := NewRP(t, s, c).Exchange(fa, authCode)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	idToken, _ := tok.Extra("id_token").(string)
	tokens := []string{authCode, tok.AccessToken, tok.RefreshToken, idToken}
	fr := atkToTOTP(t, NewBrowser(t, ""), s, c, alice.Name, alice.Password)
	if p := fr.TOTP(code); p.Status != http.StatusUnauthorized {
		t.Fatalf("replay: want 401, got %d", p.Status)
	}
	for _, w := range atkWrongCodes(alice, L+1) {
		codes = append(codes, w)
		fr.TOTP(w)
	}
	right := alice.Code(time.Now())
	codes = append(codes, right)
	if p := fr.TOTP(right); p.Status != http.StatusTooManyRequests {
		t.Fatalf("right code while locked: want 429, got %d", p.Status)
	}

	evs := atkAudit(t, s.DB, "")
	for _, typ := range []string{"password_failed", "password_ok", "totp_failed", "totp_replay", "totp_ok", "login_completed", "lock_started", "locked_refused"} {
		if atkCount(evs, typ) == 0 {
			t.Errorf("audit has no %s event", typ)
		}
	}
	logText := s.Stderr()
	if !strings.Contains(logText, "totp_failed") {
		t.Fatalf("the debug log shows no audit lines; cannot check it:\n%s", logText)
	}
	logText = atkScrubLog.ReplaceAllString(logText, "")
	s.Stop()
	var dbBytes []byte
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		if b, err := os.ReadFile(s.DB + suffix); err == nil {
			dbBytes = append(dbBytes, b...)
		}
	}
	if len(dbBytes) == 0 {
		t.Fatal("no database bytes read")
	}
	digits, isCode := regexp.MustCompile(`[0-9]+`), regexp.MustCompile(`^[0-9]{6}$`)
	for _, secret := range tokens {
		if secret == "" {
			t.Fatal("the token response lacks a token to look for")
		}
		if bytes.Contains(dbBytes, []byte(secret)) || strings.Contains(logText, secret) {
			t.Errorf("the database or the log contains an issued code or token (%.12s…)", secret)
		}
	}
	for _, secret := range append(append([]string{}, passwords...), codes...) {
		if bytes.Contains(dbBytes, []byte(secret)) {
			t.Errorf("the database files contain the submitted secret %q", secret)
		}
		if isCode.MatchString(secret) {
			// A code: look for it as a whole number in the log.
			for _, m := range digits.FindAllString(logText, -1) {
				if m == secret {
					t.Errorf("the log contains the submitted code %s", secret)
				}
			}
		} else if strings.Contains(logText, secret) {
			t.Errorf("the log contains the submitted password %q", secret)
		}
	}
	t.Logf("%d passwords, %d TOTP codes and %d issued codes/tokens; none in %d bytes of database files or %d bytes of debug log; %d audit events",
		len(passwords), len(codes), len(tokens), len(dbBytes), len(logText), len(evs))
}

// TestAttackEnumerationByLockout: probing names by locking them out tells
// nothing: an unknown name locks after the same number of failures, with
// the same status, Retry-After and page as a real account (docs/THREAT-MODEL.md R-W5), and the
// locked answer computes no hash for either.
func TestAttackEnumerationByLockout(t *testing.T) {
	t.Parallel()
	args := atkArgs(fastPolicy, []string{"--password-max-failures", "3", "--password-lock", "60s", "--password-lock-max", "120s", "--metrics-listen", "127.0.0.1:0"})
	p := atkIntFlag(t, args, "--password-max-failures")
	s := StartServer(t, args...)
	c := AddClient(t, s.DB, "app")
	AddUser(t, s.DB, "victor", "correct horse battery")
	probe := func(name string) ([]int, Page) {
		b := NewBrowser(t, "")
		f := b.StartFlow(s, c, AuthParams{})
		var statuses []int
		var last Page
		for i := 0; i <= p; i++ {
			last = f.Password(name, "wrong password!")
			statuses = append(statuses, last.Status)
			f.Form = Hidden(last.Body)
			if f.Form.Get("id") == "" {
				f.Form = Hidden(b.Get(f.LoginURL).Body)
			}
		}
		return statuses, last
	}
	known, kp := probe("victor")
	unknown, up := probe("nobody-here")
	if fmt.Sprint(known) != fmt.Sprint(unknown) {
		t.Fatalf("statuses differ: real account %v, unknown name %v", known, unknown)
	}
	if known[p] != http.StatusTooManyRequests {
		t.Fatalf("no lock after %d failures: %v", p, known)
	}
	if ka, ua := atkRetryAfter(t, kp), atkRetryAfter(t, up); ka-ua > 1 || ua-ka > 1 {
		t.Errorf("Retry-After differs: %d vs %d", ka, ua)
	}
	// Per-request values and the clock (the retry time moves on between
	// the two probes) aside, the pages are the same.
	strip := regexp.MustCompile(`(value|href)="[^"]*"|You can try again[^<]*`)
	if strip.ReplaceAllString(kp.Body, "") != strip.ReplaceAllString(up.Body, "") {
		t.Errorf("locked pages differ:\n%s\n---\n%s", kp.Body, up.Body)
	}
	// Locked answers cost no hash, for real and unknown names alike.
	before := atkMetrics(t, s)["idp_password_hashes_total"]
	probe("victor")
	probe("nobody-here")
	if after := atkMetrics(t, s)["idp_password_hashes_total"]; after != before {
		t.Errorf("locked answers computed %v hashes", after-before)
	}
	// The counter is keyed by a keyed hash: the name itself is not its key.
	conn, err := sql.Open("sqlite", "file:"+s.DB+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n int
	var key string
	if err := conn.QueryRow(`SELECT COUNT(*), MAX(key) FROM unknown_attempts`).Scan(&n, &key); err != nil {
		t.Fatal(err)
	}
	if n != 1 || strings.Contains(key, "nobody") {
		t.Errorf("unknown_attempts: %d rows, key %q", n, key)
	}
}
