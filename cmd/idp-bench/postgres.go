package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgReport is the PostgreSQL section: the same logins and refresh grants
// as SQLite's, on one replica and on three behind nginx, in the same run.
type pgReport struct {
	Skipped       string          `json:"skipped,omitempty"`
	Logins        []*loginLevel   `json:"logins,omitempty"`
	Refresh       []*refreshLevel `json:"refresh,omitempty"`
	PeakRSSC16MB  float64         `json:"peak_rss_c16_mb"`
	ThreeLogins   float64         `json:"three_replicas_logins_per_s_c16"`
	ThreeRefresh  float64         `json:"three_replicas_refresh_per_s_c16"`
	ThreeMaxRSSMB float64         `json:"three_replicas_max_rss_mb"`
}

// postgres runs the PostgreSQL section against the server named by
// IDP_TEST_POSTGRES_URL (a role that may create databases), on a database
// of its own that it drops at the end.
func (b *bench) postgres(ctx context.Context) error {
	server := os.Getenv("IDP_TEST_POSTGRES_URL")
	if server == "" {
		b.rep.Postgres.Skipped = "set IDP_TEST_POSTGRES_URL to measure PostgreSQL"
		return nil
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return fmt.Errorf("IDP_TEST_POSTGRES_URL must be a postgres:// URL: %v", err)
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	name := "idp_bench_" + hex.EncodeToString(rnd)
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") //nolint:errcheck
	u.Path = "/" + name
	db := u.String()
	key := filepath.Join(b.dir, "pg.key")
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	if err := os.WriteFile(key, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
		return err
	}
	// Every process on the database (replicas, CLI) is given this key.
	os.Setenv("IDP_SECRET_KEY_FILE", key)
	defer os.Unsetenv("IDP_SECRET_KEY_FILE")

	b.logf("PostgreSQL: one replica")
	policy := []string{"--password-max-failures", "100", "--password-hard-limit", "100"}
	srv, err := startServer(b.bin, db, policy...)
	if err != nil {
		return err
	}
	secret, err := addClient(ctx, b.bin, db)
	if err != nil {
		srv.stop()
		return err
	}
	n := b.usersNeeded()
	b.logf("creating %d users on PostgreSQL", n)
	users, err := b.createUsers(ctx, db, n)
	if err != nil {
		srv.stop()
		return fmt.Errorf("create users: %w", err)
	}
	pool := &userPool{users: users}
	r, err := newRP(ctx, srv.issuer, clientID, secret, redirectURI)
	if err != nil {
		srv.stop()
		return err
	}
	for range warmupLogins {
		if err := b.loginOnce(r, pool, "openid profile email", nil); err != nil {
			srv.stop()
			return fmt.Errorf("warm-up login: %w", err)
		}
	}
	// The level functions record into the report's SQLite fields: run
	// them with those set aside, then move what they recorded here.
	saved := *b.rep
	b.rep.Logins, b.rep.Refresh = nil, nil
	err = b.loginLevels(ctx, srv, r, pool)
	if err == nil {
		err = b.refreshLevels(ctx, srv, r, pool)
	}
	b.rep.Postgres.Logins, b.rep.Postgres.Refresh, b.rep.Postgres.PeakRSSC16MB = b.rep.Logins, b.rep.Refresh, b.rep.PeakRSSC16MB
	b.rep.Logins, b.rep.Refresh, b.rep.PeakRSSC16MB, b.rep.PeakRSSOverallMB = saved.Logins, saved.Refresh, saved.PeakRSSC16MB, saved.PeakRSSOverallMB
	srv.stop()
	if err != nil {
		return err
	}
	return b.threeReplicas(ctx, db, secret, pool)
}

// threeReplicas runs logins and refresh grants at the highest level
// through nginx in front of three replicas on db.
func (b *bench) threeReplicas(ctx context.Context, db, secret string, pool *userPool) error {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/nginx"); e == nil {
			nginx, err = "/usr/sbin/nginx", nil
		}
	}
	if err != nil {
		b.logf("nginx not installed: three replicas skipped")
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	issuer := fmt.Sprintf("http://127.0.0.1:%d", port)
	var replicas []*server
	defer func() {
		for _, s := range replicas {
			s.stop()
		}
	}()
	var ups []string
	for range 3 {
		s, err := startServer(b.bin, db, "--password-max-failures", "100", "--password-hard-limit", "100",
			"--issuer", issuer, "--trusted-proxies", "127.0.0.1/32")
		if err != nil {
			return err
		}
		replicas = append(replicas, s)
		ups = append(ups, "        server "+s.addr+";")
	}
	stop, err := startNginx(nginx, filepath.Join(b.dir, "nginx"), port, ups)
	if err != nil {
		return err
	}
	defer stop()
	b.logf("PostgreSQL: three replicas behind nginx at %s", issuer)
	r, err := newRP(ctx, issuer, clientID, secret, redirectURI)
	if err != nil {
		return err
	}
	c := levels[len(levels)-1]
	res, err := runLevel(ctx, replicas[0], b.metrics, c, b.set.Login, func(_ int, steps *[numSteps]time.Duration) error {
		return b.loginOnce(r, pool, "openid profile email", steps)
	})
	if err != nil {
		return err
	}
	if res.Failed > 0 {
		return fmt.Errorf("three replicas: %d logins failed: %s", res.Failed, strings.Join(res.Errors, "; "))
	}
	b.rep.Postgres.ThreeLogins = res.perSecond()
	b.logf("  three replicas: %d logins in %.1f s = %.1f/s", res.N, res.Elapsed.Seconds(), res.perSecond())
	chains := make([]string, c)
	for i := range chains {
		tok, err := b.loginTokens(r, pool, "openid offline_access", nil)
		if err != nil {
			return err
		}
		chains[i] = tok.RefreshToken
	}
	res, err = runLevel(ctx, replicas[0], b.metrics, c, b.set.Refresh, func(w int, _ *[numSteps]time.Duration) error {
		tok, err := r.refresh(chains[w])
		if err == nil {
			chains[w] = tok.RefreshToken
		}
		return err
	})
	if err != nil {
		return err
	}
	if res.Failed > 0 {
		return fmt.Errorf("three replicas: %d refresh grants failed: %s", res.Failed, strings.Join(res.Errors, "; "))
	}
	b.rep.Postgres.ThreeRefresh = res.perSecond()
	b.logf("  three replicas: %d refresh grants in %.1f s = %.0f/s", res.N, res.Elapsed.Seconds(), res.perSecond())
	for _, s := range replicas {
		if hwm, err := memStatus(s.pid, "VmHWM"); err == nil {
			b.rep.Postgres.ThreeMaxRSSMB = max(b.rep.Postgres.ThreeMaxRSSMB, mb(hwm))
		}
	}
	return nil
}

// startNginx runs nginx in the foreground with the tested example
// configuration (testdata/nginx-replicas.conf) and returns its stop.
func startNginx(bin, prefix string, port int, upstreams []string) (func(), error) {
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o777); err != nil {
			return nil, err
		}
	}
	_ = os.Chmod(prefix, 0o777)
	tmpl, err := os.ReadFile("testdata/nginx-replicas.conf")
	if err != nil {
		return nil, fmt.Errorf("run idp-bench from the module root: %w", err)
	}
	conf := strings.NewReplacer("{{PREFIX}}", prefix, "{{LISTEN}}", fmt.Sprintf("127.0.0.1:%d", port),
		"{{UPSTREAMS}}", strings.Join(upstreams, "\n")).Replace(string(tmpl))
	path := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-p", prefix, "-c", path, "-e", filepath.Join(prefix, "error.log"))
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
		}
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond); err == nil {
			c.Close()
			return stop, nil
		}
	}
	stop()
	return nil, fmt.Errorf("nginx did not listen on %d", port)
}
