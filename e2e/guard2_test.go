package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// g2Wrong makes one wrong password attempt for name from a new browser at
// source address ip and returns the answer.
func g2Wrong(t *testing.T, s *Server, c Client, ip, name string) Page {
	t.Helper()
	f := NewBrowser(t, ip).StartFlow(s, c, AuthParams{})
	return f.Password(name, "wrong-"+randString())
}

// g2Answer is what an attacker sees of a password attempt: the status and,
// when refused, the Retry-After in seconds.
func g2Answer(p Page) string {
	if p.Status == http.StatusTooManyRequests {
		return fmt.Sprintf("%d (retry after %ss)", p.Status, p.Header.Get("Retry-After"))
	}
	return strconv.Itoa(p.Status)
}

// g2Alike fails unless an account's answers and an unknown name's are the
// same (Retry-After within a second: the two requests are not at one
// instant).
func g2Alike(t *testing.T, what string, account, unknown Page) {
	t.Helper()
	if account.Status != unknown.Status {
		t.Errorf("%s: the account answered %s, the unknown name %s", what, g2Answer(account), g2Answer(unknown))
		return
	}
	if account.Status == http.StatusTooManyRequests {
		a, _ := strconv.Atoi(account.Header.Get("Retry-After"))
		u, _ := strconv.Atoi(unknown.Header.Get("Retry-After"))
		if a-u > 1 || u-a > 1 {
			t.Errorf("%s: Retry-After %d for the account, %d for the unknown name", what, a, u)
		}
	}
}

// g2Login signs u in from b with prompt=login (so an SSO session does not
// skip the password) and returns the TOTP step's 303 to the callback.
func g2Login(t *testing.T, b *Browser, s *Server, c Client, u User, prev bool) Page {
	t.Helper()
	f := b.StartFlow(s, c, AuthParams{Extra: url.Values{"prompt": {"login"}}})
	return confToCallback(t, f, u, prev)
}

// TestAttackOwnerLoginDoesNotTellAccounts: nine wrong passwords for an
// account and for a name without one, the owner then signs in (from a
// browser she never used, so on the shared counter), then two more wrong
// passwords for each. The owner's login used to reset the account's
// counter, so the account answered 401, 401 and the unknown name 401, 429.
// Now the right password gives back only its own claim, and both answer
// alike at every step. Default password policy (10 failures before the
// first lock).
func TestAttackOwnerLoginDoesNotTellAccounts(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "--totp-lock", "2s", "--totp-lock-max", "8s")
	u := AddUser(t, s.DB, "ursula", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	unknown := "nobody-" + strings.ToLower(randString()[:8])
	for i := range 9 {
		ip := fmt.Sprintf("127.0.0.%d", 20+i)
		g2Alike(t, fmt.Sprintf("wrong password %d", i+1), g2Wrong(t, s, c, ip, u.Name), g2Wrong(t, s, c, ip, unknown))
	}
	if p := g2Login(t, NewBrowser(t, "127.0.0.2"), s, c, u, false); p.Status != http.StatusSeeOther {
		t.Fatalf("the owner's sign-in: %d", p.Status)
	}
	var got []string
	for i := range 2 {
		ip := fmt.Sprintf("127.0.0.%d", 40+i)
		a, k := g2Wrong(t, s, c, ip, u.Name), g2Wrong(t, s, c, ip, unknown)
		got = append(got, g2Answer(a)+" / "+g2Answer(k))
		g2Alike(t, fmt.Sprintf("wrong password %d after the owner's sign-in", 10+i), a, k)
	}
	t.Logf("after the owner's sign-in, account / unknown name: %v", got)
}

// TestAttackLimitEndsAlike: an account and a name without one are driven
// to the password limit side by side; both refuse, both allow one attempt
// when a failure decays, and once every failure has decayed the server's
// garbage collection (at start-up) forgets both, after which they answer
// like fresh names. Short durations stand in for the defaults (a limit of
// 100 and a decay of a day).
func TestAttackLimitEndsAlike(t *testing.T) {
	t.Parallel()
	const decay = 3 * time.Second
	s := StartServer(t, "--password-max-failures", "3", "--password-hard-limit", "4", "--password-lock", "1s",
		"--password-lock-max", "1s", "--password-decay", decay.String(), "--totp-lock", "2s", "--totp-lock-max", "8s")
	u := AddUser(t, s.DB, "vera", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	unknown := "nobody-" + strings.ToLower(randString()[:8])
	both := func(what string, want int) {
		t.Helper()
		a, k := g2Wrong(t, s, c, "127.0.0.50", u.Name), g2Wrong(t, s, c, "127.0.0.51", unknown)
		g2Alike(t, what, a, k)
		if a.Status != want {
			t.Errorf("%s: answered %s, want %d", what, g2Answer(a), want)
		}
	}
	// Three failures at once (the third sets the 1 s lock), the fourth
	// after it: the limit is reached well within one decay period.
	start := time.Now()
	for i := range 4 {
		if i == 3 {
			time.Sleep(1100 * time.Millisecond)
		}
		both(fmt.Sprintf("failure %d", i+1), http.StatusUnauthorized)
	}
	both("at the limit", http.StatusTooManyRequests)
	// The first failure decays one period after it was made.
	time.Sleep(time.Until(start.Add(decay + time.Second)))
	both("after one failure decayed", http.StatusUnauthorized)
	both("at the limit again", http.StatusTooManyRequests)
	// Wait until every failure has decayed (the four left decay from
	// start+decay), then restart: GC runs at start-up and deletes both
	// counters by the same rule.
	time.Sleep(time.Until(start.Add(5*decay + 2*time.Second)))
	s.Stop()
	s.Restart()
	// Fresh counters for both: the free failures again (what follows them
	// is a 1 s lock, too short to assert on a loaded machine).
	for i := range 3 {
		both(fmt.Sprintf("after GC, failure %d", i+1), http.StatusUnauthorized)
	}
	if out := CLI(t, s.DB, "", "user", "show", u.Name); !strings.Contains(out, "password:") {
		t.Errorf("user show lists no password counter after new failures:\n%s", out)
	}
}

// TestAttackDeviceCookie: OWASP's device cookie against the lockout
// trade-off. An attacker locks an account's password from rotating
// addresses; the owner, in the browser she signed in from before, still
// signs in during the lock (and a wrong code there still counts on the
// account's second-factor budget); a stolen device cookie is worth its own
// --device-max-failures guesses, then it is forgotten and counts with the
// attacker's other guesses; a device cookie of another account gives
// nothing; revoke-sessions forgets a device.
func TestAttackDeviceCookie(t *testing.T) {
	t.Parallel()
	const deviceMax = 3
	s := StartServer(t, atkArgs(atkMetricsFlag, []string{"--password-max-failures", "3", "--password-lock", "60s", "--password-lock-max", "5m",
		"--device-max-failures", fmt.Sprint(deviceMax), "--totp-lock", "2s", "--totp-lock-max", "8s"})...)
	alice := AddUser(t, s.DB, "alice", "correct horse battery")
	bob := AddUser(t, s.DB, "bob", "staple paper clip")
	c := AddClient(t, s.DB, "app")
	aliceBrowser, bobBrowser := NewBrowser(t, "127.0.0.2"), NewBrowser(t, "127.0.0.3")
	if p := g2Login(t, aliceBrowser, s, c, alice, true); p.Status != http.StatusSeeOther {
		t.Fatalf("alice's first sign-in: %d", p.Status)
	}
	if p := g2Login(t, bobBrowser, s, c, bob, false); p.Status != http.StatusSeeOther {
		t.Fatalf("bob's first sign-in: %d", p.Status)
	}
	if d := len(atkShow(t, s.DB, alice.Name).Devices); d != 1 {
		t.Fatalf("alice has %d remembered devices after her sign-in, want 1", d)
	}

	// The attack: wrong passwords from rotating addresses lock the
	// shared counter.
	var attack []string
	for i := range 5 {
		p := g2Wrong(t, s, c, fmt.Sprintf("127.0.0.%d", 60+i), alice.Name)
		attack = append(attack, g2Answer(p))
	}
	if attack[2] != "401" || !strings.HasPrefix(attack[3], "429") || !strings.HasPrefix(attack[4], "429") {
		t.Fatalf("the attack from rotating addresses: %v, want 401 ×3 then 429", attack)
	}

	// The owner, in her browser, signs in during the lock; a wrong code
	// first still counts on the account's second-factor budget.
	hashes := atkMetrics(t, s)["idp_password_hashes_total"]
	f := aliceBrowser.StartFlow(s, c, AuthParams{Extra: url.Values{"prompt": {"login"}}})
	atkPasswordOK(t, f, alice.Name, alice.Password)
	if n := atkMetrics(t, s)["idp_password_hashes_total"] - hashes; n != 1 {
		t.Errorf("the password step with a device cookie computed %v argon2id hashes, want 1 (the password's own)", n)
	}
	if p := f.TOTP(atkWrongCodes(alice, 1)[0]); p.Status != http.StatusUnauthorized {
		t.Fatalf("a wrong code after the device's password: %d", p.Status)
	}
	f.Form = Hidden(aliceBrowser.Get(f.LoginURL).Body)
	r := f.TOTP(confTOTP(alice, false))
	if r.Status != http.StatusSeeOther || !strings.Contains(r.Location, "/authorize/callback") {
		t.Fatalf("the owner's sign-in during the lock: %d %s\n%s", r.Status, r.Location, r.Body)
	}
	if st := atkShow(t, s.DB, alice.Name).F("totp"); st.BudgetUsed < 1 {
		t.Errorf("a wrong code with a device cookie did not count on the account's budget: %+v", st)
	}
	if p := g2Wrong(t, s, c, "127.0.0.70", alice.Name); p.Status != http.StatusTooManyRequests {
		t.Errorf("the shared counter after the owner's sign-in: %s, want still locked", g2Answer(p))
	}

	// Bob's device cookie gives nothing for alice: the shared counter
	// (locked) answers, even with her right password.
	bf := bobBrowser.StartFlow(s, c, AuthParams{Extra: url.Values{"prompt": {"login"}}})
	if p := bf.Password(alice.Name, alice.Password); p.Status != http.StatusTooManyRequests {
		t.Errorf("alice's password with bob's device cookie: %s, want 429 (the shared counter)", g2Answer(p))
	}

	// The attacker steals alice's device cookie: it is worth deviceMax
	// guesses on its own counter, then it is forgotten and the shared
	// (locked) counter answers.
	thief := atkFrom(t, aliceBrowser, "127.0.0.80")
	var stolen []string
	evaluated := 0
	for range deviceMax + 3 {
		tf := thief.StartFlow(s, c, AuthParams{Extra: url.Values{"prompt": {"login"}}})
		p := tf.Password(alice.Name, "wrong-"+randString())
		stolen = append(stolen, g2Answer(p))
		if p.Status == http.StatusUnauthorized {
			evaluated++
		}
	}
	t.Logf("attack from rotating addresses: %v; with the stolen device cookie: %v", attack, stolen)
	if evaluated != deviceMax {
		t.Errorf("a stolen device cookie got %d guesses evaluated (%v), want its own limit %d", evaluated, stolen, deviceMax)
	}
	evs := atkAudit(t, s.DB, alice.Name)
	if n := atkCount(evs, "device_forgotten"); n != 1 {
		t.Errorf("audit: %d device_forgotten events, want 1", n)
	}
	onDevice := 0
	for _, e := range atkOfType(evs, "password_failed") {
		if strings.Contains(e.Detail, "counter=device") {
			onDevice++
		}
	}
	if onDevice != deviceMax {
		t.Errorf("audit: %d password failures counted on the device, want %d", onDevice, deviceMax)
	}
	if d := len(atkShow(t, s.DB, alice.Name).Devices); d != 0 {
		t.Errorf("alice still has %d remembered devices after the stolen cookie's limit", d)
	}

	// revoke-sessions forgets bob's device: his next attempt counts on
	// the shared counter.
	if d := len(atkShow(t, s.DB, bob.Name).Devices); d != 1 {
		t.Fatalf("bob has %d remembered devices, want 1", d)
	}
	if out := CLI(t, s.DB, "", "user", "revoke-sessions", bob.Name); !strings.Contains(out, "1 remembered device forgotten") {
		t.Errorf("revoke-sessions output does not say it forgot the device: %q", out)
	}
	if d := len(atkShow(t, s.DB, bob.Name).Devices); d != 0 {
		t.Errorf("bob has %d remembered devices after revoke-sessions", d)
	}
	bf = bobBrowser.StartFlow(s, c, AuthParams{Extra: url.Values{"prompt": {"login"}}})
	bf.Password(bob.Name, "wrong-"+randString())
	last := atkOfType(atkAudit(t, s.DB, bob.Name), "password_failed")
	if len(last) == 0 || !strings.Contains(last[len(last)-1].Detail, "counter=shared") {
		t.Errorf("bob's attempt after revoke-sessions was not counted on the shared counter: %+v", last)
	}
}

// TestAttackStolenDevicePaced: a thief with a stolen device cookie stops
// one short of --device-max-failures and then guesses once per password
// decay period. A device counter does not decay, so the cookie is worth
// exactly its limit however the guesses are paced; the next one counts on
// the shared counter. (With the password's decay on device counters, this
// thief got one guess per period for the device's whole lifetime.)
func TestAttackStolenDevicePaced(t *testing.T) {
	t.Parallel()
	const deviceMax, decay = 3, 2 * time.Second
	s := StartServer(t, "--device-max-failures", fmt.Sprint(deviceMax), "--password-decay", decay.String(),
		"--totp-lock", "2s", "--totp-lock-max", "8s")
	u := AddUser(t, s.DB, "petra", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	owner := NewBrowser(t, "127.0.0.2")
	if p := g2Login(t, owner, s, c, u, false); p.Status != http.StatusSeeOther {
		t.Fatalf("the owner's sign-in: %d", p.Status)
	}
	thief := atkFrom(t, owner, "127.0.0.90")
	for i := range 2 + 3 {
		if i >= 2 {
			time.Sleep(decay + 200*time.Millisecond)
		}
		f := thief.StartFlow(s, c, AuthParams{Extra: url.Values{"prompt": {"login"}}})
		f.Password(u.Name, "wrong-"+randString())
	}
	onDevice, shared := 0, 0
	for _, e := range atkOfType(atkAudit(t, s.DB, u.Name), "password_failed") {
		switch {
		case strings.Contains(e.Detail, "counter=device"):
			onDevice++
		case strings.Contains(e.Detail, "counter=shared"):
			shared++
		}
	}
	t.Logf("5 paced guesses with a stolen device cookie: %d on the device counter, %d on the shared one", onDevice, shared)
	if onDevice != deviceMax || shared != 5-deviceMax {
		t.Errorf("paced guesses: %d on the device, %d shared; want %d and %d", onDevice, shared, deviceMax, 5-deviceMax)
	}
	if n := len(atkShow(t, s.DB, u.Name).Devices); n != 0 {
		t.Errorf("the device is still remembered after its limit (%d)", n)
	}
}

// TestAttackRefundRace (from the hostile review): the attacker sends a
// wrong password for an account a few milliseconds after the owner sends
// her right one, so that the wrong claim lands while hers is counted but
// not yet given back. It used to be counted one higher and set a lock an
// unknown name never gets, which survived her success (account 429,
// unknown name 401 on the next attempt). The owner's success now
// recomputes the lock for the count without her claim.
func TestAttackRefundRace(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "--password-max-failures", "3", "--password-lock", "30s", "--password-lock-max", "30s",
		"--password-decay", "1h", "--totp-lock", "2s", "--totp-lock-max", "8s")
	c := AddClient(t, s.DB, "app")
	for round := range 3 {
		u := AddUser(t, s.DB, fmt.Sprintf("ruth%d", round), "correct horse battery")
		unknown := fmt.Sprintf("nobody%d-%s", round, strings.ToLower(randString()[:6]))
		g2Wrong(t, s, c, "127.0.0.60", u.Name)
		g2Wrong(t, s, c, "127.0.0.60", unknown)
		owner := NewBrowser(t, "127.0.0.61").StartFlow(s, c, AuthParams{})
		attacker := NewBrowser(t, "127.0.0.62").StartFlow(s, c, AuthParams{})
		other := NewBrowser(t, "127.0.0.63").StartFlow(s, c, AuthParams{})
		var op, ap Page
		done := make(chan struct{})
		go func() { defer close(done); op = owner.Password(u.Name, u.Password) }()
		time.Sleep(time.Duration(3+2*round) * time.Millisecond)
		ap = attacker.Password(u.Name, "wrong-"+randString())
		<-done
		kp := other.Password(unknown, "wrong-"+randString())
		next, nextK := g2Wrong(t, s, c, "127.0.0.64", u.Name), g2Wrong(t, s, c, "127.0.0.64", unknown)
		t.Logf("round %d: owner %d, racing wrong attempt %s (unknown name %s); next: account %s, unknown %s",
			round, op.Status, g2Answer(ap), g2Answer(kp), g2Answer(next), g2Answer(nextK))
		if op.Status != http.StatusSeeOther {
			t.Fatalf("round %d: the owner's password answered %d", round, op.Status)
		}
		g2Alike(t, fmt.Sprintf("round %d, the attempt after the race", round), next, nextK)
	}
}

// TestAttackCreateDeleteInvisible (from the hostile review): a name held
// at the password limit keeps answering 429 when an account is created
// under it, and an account held at the limit keeps answering 429 when it
// is deleted; both used to answer 401 at once, telling the attacker the
// moment an account appeared (password-only during its enrollment window)
// or went.
func TestAttackCreateDeleteInvisible(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "--password-max-failures", "3", "--password-hard-limit", "4", "--password-lock", "1s",
		"--password-lock-max", "1s", "--password-decay", "1h", "--totp-lock", "2s", "--totp-lock-max", "8s")
	c := AddClient(t, s.DB, "app")
	dora := AddUser(t, s.DB, "dora", "correct horse battery")
	for i := range 4 {
		if i == 3 {
			time.Sleep(1100 * time.Millisecond) // past the lock the third set
		}
		g2Wrong(t, s, c, "127.0.0.70", "newhire")
		g2Wrong(t, s, c, "127.0.0.70", dora.Name)
	}
	for _, n := range []string{"newhire", dora.Name} {
		if p := g2Wrong(t, s, c, "127.0.0.71", n); p.Status != http.StatusTooManyRequests {
			t.Fatalf("%s is not at the limit: %s", n, g2Answer(p))
		}
	}
	AddUser(t, s.DB, "newhire", "staple paper clip")
	CLI(t, s.DB, "", "user", "delete", dora.Name)
	for _, n := range []string{"newhire", dora.Name} {
		if p := g2Wrong(t, s, c, "127.0.0.72", n); p.Status != http.StatusTooManyRequests {
			t.Errorf("%s after the account was created or deleted: %s, want 429 as before", n, g2Answer(p))
		}
	}
}
