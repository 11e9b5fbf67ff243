package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPostgresReplicas: two `idp serve` processes on one PostgreSQL
// database behave as one provider (issue 11; docs/THREAT-MODEL.md rules
// 3 and 6). A sign-in and the code flow complete on either; TOTP guesses
// alternated between the replicas are evaluated no more often than on
// one, and the lock holds on both; one code is accepted once across
// both, also when sent to both at once; a replica killed with SIGKILL
// loses nothing committed, and the other keeps serving.
func TestPostgresReplicas(t *testing.T) {
	db := PostgresDB(t)
	args := atkArgs(atkLockArgs(4, 10))
	L := atkIntFlag(t, args, "--totp-max-failures")
	a := StartServerOn(t, db, args...)
	b := StartServerOn(t, db, args...)
	u := AddUser(t, db, "alice", "correct horse battery")
	c := AddClient(t, db, "app")

	// The code flow through each replica, tokens checked by go-oidc (a
	// user each: one TOTP step is accepted once, whatever the replica).
	carol := AddUser(t, db, "carol", "correct horse battery")
	for i, s := range []*Server{a, b} {
		who := []User{u, carol}[i]
		rp := NewRP(t, s, c)
		f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
		tok, err := rp.Exchange(f, f.Login(who))
		if err != nil {
			t.Fatalf("exchange on %s: %v", s.URL, err)
		}
		if cl := rp.VerifyID(t, tok, f); cl.Sub != who.ID {
			t.Fatalf("sub %q on %s", cl.Sub, s.URL)
		}
	}

	// Wrong TOTP codes alternated between the replicas: at most L are
	// evaluated, then both refuse.
	br := NewBrowser(t, "127.0.0.2")
	f := atkToTOTP(t, br, a, c, u.Name, u.Password)
	evaluated, refused := 0, 0
	for i, code := range atkWrongCodes(u, 3*L) {
		s := []*Server{a, b}[i%2]
		switch p := atkPost(t, br, s.URL+"/login/totp", atkTOTPForm(f, code), nil); p.Status {
		case http.StatusUnauthorized:
			evaluated++
		case http.StatusTooManyRequests:
			refused++
		default:
			t.Fatalf("guess %d on %s: %d", i, s.URL, p.Status)
		}
	}
	if evaluated > L || refused != 3*L-evaluated {
		t.Fatalf("alternating replicas: %d evaluated (limit %d), %d refused", evaluated, L, refused)
	}
	if st := atkShow(t, db, u.Name).F("totp"); st.Failures < L {
		t.Fatalf("TOTP counter after the guesses: %+v", st)
	}
	t.Logf("alternating replicas: %d of %d guesses evaluated (limit %d), %d refused", evaluated, 3*L, L, refused)
	CLI(t, db, "", "user", "unlock", u.Name)

	// One code of an account that has used none yet, sent to both
	// replicas at once in two flows: exactly one wins.
	bob := AddUser(t, db, "bob", "correct horse battery")
	code := bob.Code(time.Now())
	flows := []*Flow{
		atkToTOTP(t, NewBrowser(t, ""), a, c, bob.Name, bob.Password),
		atkToTOTP(t, NewBrowser(t, ""), b, c, bob.Name, bob.Password),
	}
	var wg sync.WaitGroup
	status := make([]int, 2)
	for i := range flows { // flows[0] is on a, flows[1] on b
		wg.Add(1)
		go func() {
			defer wg.Done()
			status[i] = flows[i].TOTP(code).Status
		}()
	}
	wg.Wait()
	won := 0
	for _, st := range status {
		if st == http.StatusSeeOther {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("one code on two replicas at once: %v, want exactly one accepted", status)
	}
	t.Logf("one code on two replicas at once: %v", status)

	// SIGKILL one replica: the other serves, and nothing committed is
	// lost (the users, the lock counters, the audit trail).
	before := len(atkAudit(t, db, ""))
	a.Kill()
	dave := AddUser(t, db, "dave", "correct horse battery")
	f2 := NewBrowser(t, "").StartFlow(b, c, AuthParams{})
	if _, err := NewRP(t, b, c).Exchange(f2, f2.Login(dave)); err != nil {
		t.Fatalf("the remaining replica: %v", err)
	}
	a.Restart()
	if after := len(atkAudit(t, db, "")); after <= before {
		t.Fatalf("audit rows %d after the kill and a sign-in, %d before", after, before)
	}
	erin := AddUser(t, db, "erin", "correct horse battery")
	f3 := NewBrowser(t, "").StartFlow(a, c, AuthParams{})
	if _, err := NewRP(t, a, c).Exchange(f3, f3.Login(erin)); err != nil {
		t.Fatalf("the restarted replica: %v", err)
	}
}

// TestReplicaCachesFollowChanges: on PostgreSQL a replica's cached
// clients and signing keys follow a change made elsewhere at once
// (LISTEN/NOTIFY), not at their timed re-read (5 s and 15 s): a deleted
// client is refused, a new key is published.
func TestReplicaCachesFollowChanges(t *testing.T) {
	db := PostgresDB(t)
	a := StartServerOn(t, db)
	c := AddClient(t, db, "app")
	b := NewBrowser(t, "")
	authorize := func() Page {
		u, _ := AuthorizeURL(a, c, AuthParams{})
		return b.Get(u)
	}
	if p := authorize(); p.Status != http.StatusFound {
		t.Fatalf("authorize before the delete: %d", p.Status)
	}
	jwks := func() string { return b.Get(a.URL + "/keys").Body }
	before := jwks()
	start := time.Now()
	CLI(t, db, "", "client", "delete", "app")
	for authorize().Status == http.StatusFound {
		if time.Since(start) > 4*time.Second {
			t.Fatal("the replica still accepts the deleted client after 4 s (its timed re-read is 5 s)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("deleted client refused by the replica after %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	CLI(t, db, "", "keys", "rotate", "--activate-after", "0s")
	for jwks() == before {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the replica still publishes the old key set after 10 s (its timed re-read is 15 s)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("new signing key published by the replica after %s", time.Since(start).Round(time.Millisecond))
}

// TestPostgresOutage: while the database is unreachable (every
// connection dropped, new ones refused, as in a PostgreSQL restart) the
// replica answers what needs the database with 503 and Retry-After, never
// a 500 or a crash; /healthz stays 200 and /readyz says 503; when the
// database is back, service resumes by itself.
func TestPostgresOutage(t *testing.T) {
	db := PostgresDB(t)
	p := startPGProxy(t)
	s := StartServerOn(t, p.url(db), fastPolicy...)
	u := AddUser(t, db, "alice", "correct horse battery")
	c := AddClient(t, db, "app")
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})

	p.stop()
	b := NewBrowser(t, "")
	hist := map[int]int{}
	for i := range 20 {
		var page Page
		switch i % 4 {
		case 0:
			u, _ := AuthorizeURL(s, c, AuthParams{})
			page = b.Get(u)
		case 1:
			page = f.Password(u.Name, u.Password)
		case 2:
			page = b.Get(s.URL + "/login/?id=" + f.Form.Get("id"))
		case 3:
			page = b.Post(s.URL+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"},
				"client_id": {c.ID}, "client_secret": {c.Secret}, "redirect_uri": {c.RedirectURI}})
			if page.Status == http.StatusServiceUnavailable && !strings.Contains(page.Body, "temporarily_unavailable") {
				t.Errorf("token endpoint with the database down: %s", page.Body)
			}
		}
		hist[page.Status]++
		if page.Status != http.StatusServiceUnavailable || page.Header.Get("Retry-After") == "" {
			t.Errorf("request %d with the database down: %d, Retry-After %q, Location %q\n%.300s", i, page.Status, page.Header.Get("Retry-After"), page.Location, page.Body)
		}
	}
	if r := b.Get(s.URL + "/readyz"); r.Status != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the database down: %d", r.Status)
	}
	if r := b.Get(s.URL + "/healthz"); r.Status != http.StatusOK {
		t.Errorf("/healthz with the database down: %d", r.Status)
	}
	t.Logf("with the database down: %v", hist)

	p.start()
	deadline := time.Now().Add(15 * time.Second)
	for b.Get(s.URL+"/readyz").Status != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("not ready 15 s after the database came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	f = NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	if _, err := NewRP(t, s, c).Exchange(f, f.Login(u)); err != nil {
		t.Fatalf("sign-in after the database came back: %v", err)
	}
}

// TestKillWithGuessesInFlight: a replica killed with SIGKILL while it
// holds TOTP guesses in flight gives the attacker nothing: every guess it
// answered as wrong is counted in the database, and the guesses that
// follow on another replica stop at the same limit (a claim is committed
// before its code is checked, docs/THREAT-MODEL.md rule 3).
func TestKillWithGuessesInFlight(t *testing.T) {
	db := PostgresDB(t)
	args := atkArgs(atkLockArgs(6, 10))
	L := atkIntFlag(t, args, "--totp-max-failures")
	a := StartServerOn(t, db, args...)
	b := StartServerOn(t, db, args...)
	u := AddUser(t, db, "alice", "correct horse battery")
	c := AddClient(t, db, "app")
	br := NewBrowser(t, "")
	f := atkToTOTP(t, br, a, c, u.Name, u.Password)
	codes := atkWrongCodes(u, 4*L)
	var mu sync.Mutex
	answered := map[int]int{}
	next := 0 // the next code to send
	take := func() (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next >= 2*L {
			return "", false
		}
		next++
		return codes[next-1], true
	}
	var wg sync.WaitGroup
	for range 4 { // four streams of guesses at replica a, until it dies
		wg.Add(1)
		go func() {
			defer wg.Done()
			for code, ok := take(); ok; code, ok = take() {
				p, err := atkDo(br, atkFormRequest(a.URL+"/login/totp", atkTOTPForm(f, code), nil))
				if err != nil {
					return // the replica is gone
				}
				mu.Lock()
				answered[p.Status]++
				mu.Unlock()
			}
		}()
	}
	// Kill it once it has answered a guess, with others in flight.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		n := answered[http.StatusUnauthorized]
		mu.Unlock()
		if n >= 1 || time.Now().After(deadline) {
			break
		}
	}
	a.Kill()
	wg.Wait()
	if answered[http.StatusUnauthorized] == 0 {
		t.Fatal("the replica answered no guess before it was killed")
	}
	sent := next
	counted := atkShow(t, db, u.Name).F("totp").Failures
	if counted < answered[http.StatusUnauthorized] {
		t.Fatalf("%d guesses answered wrong by the killed replica, %d counted", answered[http.StatusUnauthorized], counted)
	}
	evaluated := answered[http.StatusUnauthorized]
	for _, code := range codes[2*L:] {
		if p := atkPost(t, br, b.URL+"/login/totp", atkTOTPForm(f, code), nil); p.Status == http.StatusUnauthorized {
			evaluated++
		}
	}
	if evaluated > L {
		t.Fatalf("%d guesses evaluated in all, limit %d", evaluated, L)
	}
	t.Logf("killed after %d guesses sent: %v answered, %d counted; %d evaluated in all (limit %d)", sent, answered, counted, evaluated, L)
}
