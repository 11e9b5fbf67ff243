package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGracefulShutdown: SIGTERM ends the server with exit status 0 within
// its drain time, and everything committed is there after a restart.
func TestGracefulShutdown(t *testing.T) {
	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "rhea", "correct horse battery")
	NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Login(u)
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(12 * time.Second):
		t.Fatal("idp did not stop within 12 s of SIGTERM")
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM\n%s", code, s.Stderr())
	}
	t.Logf("stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	s.Restart()
	if out := CLI(t, s.DB, "", "audit", "--user", u.Name); !strings.Contains(out, "login_completed") {
		t.Fatalf("audit after restart:\n%s", out)
	}
	if p := NewBrowser(t, "").Get(s.URL + "/healthz"); p.Status != http.StatusOK {
		t.Fatalf("healthz after restart: %d", p.Status)
	}
}

// TestServeConfigFile: idp serve --config reads "name = value" lines; the
// command line wins over the file, and a bad file stops the server with
// the file name and line.
func TestServeConfigFile(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "idp.conf")
	if err := os.WriteFile(conf, []byte("# test configuration\ntotp-max-failures = 2\ntotp-lock = 1h\nproduct-name = Config Test IdP\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := StartServer(t, "--config", conf, "--product-name", "Flag Wins IdP")
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "sam", "correct horse battery")
	f := NewBrowser(t, "").StartFlow(s, c, AuthParams{})
	if !strings.Contains(f.B.Get(f.LoginURL).Body, "Flag Wins IdP") {
		t.Error("the command line did not win over the config file")
	}
	if p := f.Password(u.Name, u.Password); p.Status != http.StatusSeeOther {
		t.Fatalf("password: %d", p.Status)
	}
	f.Form = Hidden(f.B.Get(f.LoginURL).Body)
	statuses := []int{}
	for _, code := range atkWrongCodes(u, 3) {
		statuses = append(statuses, f.TOTP(code).Status)
	}
	if statuses[0] != 401 || statuses[1] != 401 || statuses[2] != 429 {
		t.Fatalf("with totp-max-failures = 2 from the file: %v", statuses)
	}
	bad := filepath.Join(dir, "bad.conf")
	_ = os.WriteFile(bad, []byte("listen = 127.0.0.1:0\nno-such-setting = 1\n"), 0o600)
	cmd := exec.Command(idpBin, "serve", "--db", filepath.Join(dir, "x.db"), "--config", bad)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "bad.conf:2") {
		t.Fatalf("bad config: %v\n%s", err, out)
	}
}

// TestExampleConfigParses: every setting in testdata/idp.conf.example is a
// real flag (the command line overrides the machine-specific ones).
func TestExampleConfigParses(t *testing.T) {
	db := filepath.Join(t.TempDir(), "idp.db")
	ensureKey(t, db)
	s := StartServerOn(t, db, "--config", "../testdata/idp.conf.example", "--issuer", "",
		"--secret-key-file", db+".key", "--metrics-listen", "127.0.0.1:0")
	if p := NewBrowser(t, "").Get(s.URL + "/healthz"); p.Status != http.StatusOK {
		t.Fatalf("healthz: %d", p.Status)
	}
}

// TestFileModes: a secret key file that group or others may read is
// refused with the command that fixes it, and the database, its -wal and
// its -shm file are created readable by their owner only (they hold
// argon2id hashes; storage/sqlite's TestNewFilesPrivate does it under a
// umask of 0).
func TestFileModes(t *testing.T) {
	dir := t.TempDir()
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		key := filepath.Join(dir, fmt.Sprintf("loose-%04o.key", mode))
		secWriteKey(t, key)
		if err := os.Chmod(key, mode); err != nil {
			t.Fatal(err)
		}
		errOut, exited := opsServeExits(t, filepath.Join(dir, fmt.Sprintf("loose-%04o.db", mode)), "--secret-key-file", key)
		if !exited || !strings.Contains(errOut, "chmod 600 "+key) {
			t.Errorf("serve with a key file of mode %04o: exited %v, want a refusal saying chmod 600 %s\n%s", mode, exited, key, errOut)
		}
	}

	s := StartServer(t, fastPolicy...)
	c := AddClient(t, s.DB, "app")
	u := AddUser(t, s.DB, "mo", "correct horse battery")
	NewBrowser(t, "").StartFlow(s, c, AuthParams{}).Login(u)
	for _, p := range []string{s.DB, s.DB + "-wal", s.DB + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(p), err)
			continue
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", filepath.Base(p), m)
		}
	}
}

// opsServeExits runs idp serve on db with args and reports its stderr and
// whether it exited by itself within 10 s (a refusal to start) rather than
// serving until it was killed.
func opsServeExits(t *testing.T, db string, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, idpBin, append([]string{"serve", "--db", db, "--listen", "127.0.0.1:0"}, args...)...)
	var errOut strings.Builder
	cmd.Stderr = &errOut
	err := cmd.Run()
	return errOut.String(), err != nil && ctx.Err() == nil
}

// TestLibraryLogLinesCarryRequestID: the protocol library logs through
// the default logger; its lines inside a request carry that request's id
// and address like ours, so an operator can join them to the access log
// line and the X-Request-Id the client saw.
func TestLibraryLogLinesCarryRequestID(t *testing.T) {
	s := StartServer(t)
	resp, err := http.PostForm(s.URL+"/oauth/token", map[string][]string{"grant_type": {"authorization_code"}, "code": {"nothing"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnauthorized || id == "" {
		t.Fatalf("token request: %d, X-Request-Id %q", resp.StatusCode, id)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var lib []string
		for _, l := range strings.Split(s.Stderr(), "\n") {
			if strings.Contains(l, `msg="request error"`) {
				lib = append(lib, l)
			}
		}
		if len(lib) > 0 {
			if !strings.Contains(lib[0], "request_id="+id) || !strings.Contains(lib[0], "ip=127.0.0.1") {
				t.Fatalf("library line without the request's id %s:\n%s", id, lib[0])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no library log line:\n%s", s.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
