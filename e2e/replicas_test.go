package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// freePort is a loopback port nothing listens on now.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startNginx runs nginx in the foreground on 127.0.0.1:port with the
// tested example configuration testdata/nginx-replicas.conf, balancing
// over upstreams (host:port), and stops it when t ends.
func startNginx(t testing.TB, port int, upstreams []string) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		if os.Getenv(envPostgresRequired) == "1" {
			t.Fatal("nginx is not installed but IDP_TEST_POSTGRES_REQUIRED=1 (.ci/run installs it)")
		}
		t.Skip("nginx is not installed (apt-get install nginx)")
	}
	prefix := t.TempDir()
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.Chmod(prefix, 0o777) // workers run as nobody when nginx runs as root
	tmpl, err := os.ReadFile("../testdata/nginx-replicas.conf")
	if err != nil {
		t.Fatal(err)
	}
	var ups []string
	for _, u := range upstreams {
		ups = append(ups, "        server "+u+";")
	}
	conf := strings.NewReplacer("{{PREFIX}}", prefix, "{{LISTEN}}", fmt.Sprintf("127.0.0.1:%d", port),
		"{{UPSTREAMS}}", strings.Join(ups, "\n")).Replace(string(tmpl))
	path := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", prefix, "-c", path, "-e", filepath.Join(prefix, "error.log"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			t.Fatalf("nginx exited: %s\n%s", out.String(), log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen within 10 s: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReplicasBehindNginx: three `idp serve` replicas on one PostgreSQL
// database behind nginx's round robin (testdata/nginx-replicas.conf),
// with --trusted-proxies for nginx: one provider to a browser, a client
// and an attacker. Through nginx, every request reaching whichever
// replica: the code flow with go-oidc; TOTP guesses evaluated no more
// than the limit, sent one after another (each to the next replica) or
// all at once; one code accepted once when sent to two replicas at once;
// one authorization code redeemed once when two token requests race; the
// client's real address in the audit trail; a replica killed with
// SIGKILL during a stream of sign-ins costs nothing committed and the
// others go on; every replica restarted, and the sign-in still works
// (docs/THREAT-MODEL.md rules 3, 6, 10).
func TestReplicasBehindNginx(t *testing.T) {
	db := PostgresDB(t)
	port := freePort(t)
	issuer := fmt.Sprintf("http://127.0.0.1:%d", port)
	args := atkArgs(atkLockArgs(4, 10), []string{"--issuer", issuer, "--trusted-proxies", "127.0.0.1/32"})
	L := atkIntFlag(t, args, "--totp-max-failures")
	var replicas []*Server
	var addrs []string
	for range 3 {
		r := StartServerOn(t, db, args...)
		replicas = append(replicas, r)
		addrs = append(addrs, r.Addr)
	}
	startNginx(t, port, addrs)
	front := &Server{t: t, URL: issuer, DB: db}
	c := AddClient(t, db, "app")
	users := map[string]User{}
	for _, n := range []string{"alice", "bob", "carol", "dave"} {
		users[n] = AddUser(t, db, n, "correct horse battery")
	}

	// The code flow with go-oidc.
	rp := NewRP(t, front, c)
	f := NewBrowser(t, "").StartFlow(front, c, AuthParams{})
	tok, err := rp.Exchange(f, f.Login(users["alice"]))
	if err != nil {
		t.Fatalf("exchange through nginx: %v", err)
	}
	if cl := rp.VerifyID(t, tok, f); cl.Sub != users["alice"].ID || cl.Iss != issuer {
		t.Fatalf("ID token through nginx: %+v", cl)
	}

	// Sequential guesses, each to the next replica, from 127.0.0.2.
	bob := users["bob"]
	br := NewBrowser(t, "127.0.0.2")
	fb := atkToTOTP(t, br, front, c, bob.Name, bob.Password)
	evaluated := 0
	for i, code := range atkWrongCodes(bob, 3*L) {
		switch p := atkPost(t, br, issuer+"/login/totp", atkTOTPForm(fb, code), nil); p.Status {
		case http.StatusUnauthorized:
			evaluated++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("guess %d: %d", i, p.Status)
		}
	}
	if evaluated > L {
		t.Fatalf("sequential guesses over three replicas: %d evaluated, limit %d", evaluated, L)
	}
	t.Logf("sequential guesses over three replicas: %d of %d evaluated (limit %d)", evaluated, 3*L, L)
	failures := 0
	for _, e := range atkAudit(t, db, bob.Name) {
		if e.Event == "totp_failed" {
			failures++
			if e.IP != "127.0.0.2" {
				t.Fatalf("audit row from %q, want the client's 127.0.0.2 (nginx is a trusted proxy)", e.IP)
			}
		}
	}
	if failures != evaluated {
		t.Fatalf("%d totp_failed rows for %d evaluated guesses", failures, evaluated)
	}

	// Concurrent guesses, all at once.
	carol := users["carol"]
	fc := atkToTOTP(t, NewBrowser(t, ""), front, c, carol.Name, carol.Password)
	codes := atkWrongCodes(carol, 4*L)
	var mu sync.Mutex
	hist := map[int]int{}
	var wg sync.WaitGroup
	for _, code := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := atkPost(t, fc.B, issuer+"/login/totp", atkTOTPForm(fc, code), nil)
			mu.Lock()
			hist[p.Status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if hist[http.StatusUnauthorized] > L || hist[http.StatusUnauthorized]+hist[http.StatusTooManyRequests]+hist[http.StatusServiceUnavailable] != len(codes) {
		t.Fatalf("%d concurrent guesses: %v (limit %d)", len(codes), hist, L)
	}
	t.Logf("%d concurrent guesses over three replicas: %v (limit %d)", len(codes), hist, L)

	// One code in two flows at once, and one authorization code redeemed
	// by two racing token requests.
	dave := users["dave"]
	code := dave.Code(time.Now())
	flows := []*Flow{
		atkToTOTP(t, NewBrowser(t, ""), front, c, dave.Name, dave.Password),
		atkToTOTP(t, NewBrowser(t, ""), front, c, dave.Name, dave.Password),
	}
	pages := make([]Page, 2)
	for i := range flows {
		wg.Add(1)
		go func() { defer wg.Done(); pages[i] = flows[i].TOTP(code) }()
	}
	wg.Wait()
	winner := -1
	for i, p := range pages {
		if p.Status == http.StatusSeeOther {
			if winner >= 0 {
				t.Fatalf("one TOTP code accepted twice: %d, %d", pages[0].Status, pages[1].Status)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("the right code accepted by neither flow: %d, %d", pages[0].Status, pages[1].Status)
	}
	authCode := flows[winner].CodeFrom(flows[winner].Follow(pages[winner]))
	// At most one gets tokens, and none that work afterwards: the other
	// redemption is reuse, which revokes what the code gave, even when
	// the winner stores its tokens after that revocation (refused).
	results := make([]error, 2)
	toks := make([]string, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := rp.Exchange(flows[winner], authCode)
			results[i] = err
			if err == nil {
				toks[i] = tok.AccessToken
			}
		}()
	}
	wg.Wait()
	if results[0] == nil && results[1] == nil {
		t.Fatalf("one authorization code redeemed twice over replicas")
	}
	for _, at := range toks {
		if at == "" {
			continue
		}
		req, _ := http.NewRequest(http.MethodGet, issuer+"/userinfo", nil)
		req.Header.Set("Authorization", "Bearer "+at)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("the racing winner's access token after the reuse: userinfo %d, want 401", resp.StatusCode)
		}
	}
	t.Logf("one authorization code, two racing redemptions: %v, %v", results[0], results[1])

	// SIGKILL one replica during a stream of sign-ins.
	var stream []User
	for i := range 6 {
		stream = append(stream, AddUser(t, db, fmt.Sprintf("stream%d", i), "correct horse battery"))
	}
	for i, u := range stream {
		if i == 2 {
			replicas[0].Kill()
		}
		f := NewBrowser(t, "").StartFlow(front, c, AuthParams{})
		if _, err := rp.Exchange(f, f.Login(u)); err != nil {
			t.Fatalf("sign-in %d (replica 0 killed before the third): %v", i, err)
		}
	}
	for _, u := range stream {
		if st := atkShow(t, db, u.Name); st.ID != u.ID {
			t.Fatalf("user %s after the kill: %+v", u.Name, st)
		}
	}
	if st := atkShow(t, db, bob.Name).F("totp"); st.Failures < L {
		t.Fatalf("bob's counter after the kill: %+v", st)
	}

	// Every replica restarted: the same provider.
	replicas[0].Restart()
	for _, r := range replicas[1:] {
		r.Stop()
		r.Restart()
	}
	erin := AddUser(t, db, "erin", "correct horse battery")
	f = NewBrowser(t, "").StartFlow(front, c, AuthParams{})
	tok, err = rp.Exchange(f, f.Login(erin))
	if err != nil {
		t.Fatalf("after restarting every replica: %v", err)
	}
	if tok.AccessToken == "" {
		t.Fatal("no access token after restarting every replica")
	}
}
