package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// mainServer runs the login, refresh and static-document levels against
// one server whose lock policy the benchmark's traffic never trips.
func (b *bench) mainServer(ctx context.Context) error {
	db := filepath.Join(b.dir, "idp.db")
	b.logf("starting idp serve")
	if err := writeSecretKey(db); err != nil {
		return err
	}
	srv, err := startServer(b.bin, db, "--password-max-failures", "100", "--password-hard-limit", "100")
	if err != nil {
		return err
	}
	defer srv.stop()
	b.logf("idp serve pid %d at %s, metrics %s", srv.pid, srv.issuer, srv.metricsURL)
	secret, err := addClient(ctx, b.bin, db)
	if err != nil {
		return err
	}
	n := b.usersNeeded()
	b.logf("creating %d users with `idp user add --password-stdin` in parallel", n)
	t := time.Now()
	users, err := b.createUsers(ctx, db, n)
	if err != nil {
		return fmt.Errorf("create users: %w", err)
	}
	b.rep.Users.Created, b.rep.Users.Seconds = n, time.Since(t).Seconds()
	pool := &userPool{users: users}
	b.mainDB, b.pool, b.secret = db, pool, secret
	r, err := newRP(ctx, srv.issuer, clientID, secret, redirectURI)
	if err != nil {
		return err
	}

	withServer := func(err error) error {
		if err != nil && !srv.alive() {
			return fmt.Errorf("%w\nidp serve exited:\n%s", err, srv.stderrTail())
		}
		return err
	}
	b.logf("warm-up: %d logins", warmupLogins)
	for range warmupLogins {
		if err := b.loginOnce(r, pool, "openid profile email", nil); err != nil {
			return withServer(fmt.Errorf("warm-up login: %w", err))
		}
	}
	if err := withServer(b.loginLevels(ctx, srv, r, pool)); err != nil {
		return err
	}
	if err := withServer(b.refreshLevels(ctx, srv, r, pool)); err != nil {
		return err
	}
	if err := withServer(b.staticDocs(ctx, srv, r)); err != nil {
		return err
	}
	if hwm, err := memStatus(srv.pid, "VmHWM"); err == nil {
		b.rep.PeakRSSOverallMB = max(b.rep.PeakRSSOverallMB, mb(hwm))
	}
	return nil
}

// loginOnce runs one complete login with a user that may log in now.
func (b *bench) loginOnce(r *rp, pool *userPool, scope string, steps *[numSteps]time.Duration) error {
	_, err := b.loginTokens(r, pool, scope, steps)
	return err
}

func (b *bench) loginTokens(r *rp, pool *userPool, scope string, steps *[numSteps]time.Duration) (tokens, error) {
	u, err := pool.acquire(time.Now())
	if err != nil {
		return tokens{}, fmt.Errorf("%w: %w", errStop, err)
	}
	tok, step, err := r.login(u, scope, steps)
	pool.release(u, step, err != nil)
	return tok, err
}

func (b *bench) loginLevels(ctx context.Context, srv *server, r *rp, pool *userPool) error {
	for _, c := range levels {
		if err := ctx.Err(); err != nil {
			return err
		}
		if c == levels[len(levels)-1] {
			// Attribute the peak RSS to this level alone; keep the
			// earlier peak for the overall figure.
			if hwm, err := memStatus(srv.pid, "VmHWM"); err == nil {
				b.rep.PeakRSSOverallMB = max(b.rep.PeakRSSOverallMB, mb(hwm))
			}
			if err := resetPeakRSS(srv.pid); err != nil {
				b.logf("cannot reset VmHWM (%v); the c=%d peak includes earlier levels", err, c)
			}
		}
		b.logf("logins at concurrency %d", c)
		res, err := runLevel(ctx, srv, b.metrics, c, b.set.Login, func(_ int, steps *[numSteps]time.Duration) error {
			return b.loginOnce(r, pool, "openid profile email", steps)
		})
		if err != nil {
			return err
		}
		l := b.rep.addLogin(res)
		if c == levels[len(levels)-1] {
			if hwm, err := memStatus(srv.pid, "VmHWM"); err == nil {
				l.PeakRSSMB = mb(hwm)
				b.rep.PeakRSSC16MB = mb(hwm)
				b.rep.PeakRSSOverallMB = max(b.rep.PeakRSSOverallMB, mb(hwm))
			}
		}
		b.logf("  %d logins in %.1f s = %.1f/s, server CPU %.1f ms/login", res.N, res.Elapsed.Seconds(), res.perSecond(), ms(res.perOp()))
		if res.Failed > 0 {
			return fmt.Errorf("logins at concurrency %d: %d failed: %s", c, res.Failed, strings.Join(res.Errors, "; "))
		}
	}
	return nil
}

// refreshLevels logs in once per worker with offline_access, then loops
// the refresh grant on each worker's own token chain.
func (b *bench) refreshLevels(ctx context.Context, srv *server, r *rp, pool *userPool) error {
	chains := make([]string, levels[len(levels)-1])
	b.logf("refresh: %d logins with offline_access", len(chains))
	for i := range chains {
		tok, err := b.loginTokens(r, pool, "openid offline_access", nil)
		if errors.Is(err, errNoUser) {
			// The login levels ran faster than the pool was sized for
			// and used every user in this TOTP step: the next step
			// frees them all.
			if err := b.nextStep(ctx); err != nil {
				return err
			}
			tok, err = b.loginTokens(r, pool, "openid offline_access", nil)
		}
		if err != nil {
			return fmt.Errorf("login for a refresh token: %w", err)
		}
		if tok.RefreshToken == "" {
			return errors.New("no refresh token issued for scope openid offline_access")
		}
		chains[i] = tok.RefreshToken
	}
	for _, c := range levels {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.logf("refresh grants at concurrency %d", c)
		verified := make([]bool, c)
		res, err := runLevel(ctx, srv, b.metrics, c, b.set.Refresh, func(w int, _ *[numSteps]time.Duration) error {
			tok, err := r.refresh(chains[w])
			if err != nil {
				return err
			}
			chains[w] = tok.RefreshToken
			if !verified[w] {
				// One full verification per worker and level; the rest
				// are checked by header to keep client CPU low.
				verified[w] = true
				return r.verifyID(tok.IDToken, "")
			}
			return nil
		})
		if err != nil {
			return err
		}
		b.rep.addRefresh(res)
		b.logf("  %d grants in %.1f s = %.0f/s, server CPU %.2f ms/grant", res.N, res.Elapsed.Seconds(), res.perSecond(), ms(res.perOp()))
		if res.Failed > 0 {
			return fmt.Errorf("refresh grants at concurrency %d: %d failed: %s", c, res.Failed, strings.Join(res.Errors, "; "))
		}
	}
	return nil
}

// staticDocs fetches JWKS and discovery at the highest concurrency.
func (b *bench) staticDocs(ctx context.Context, srv *server, r *rp) error {
	c := levels[len(levels)-1]
	hc := &http.Client{Transport: r.transport, Timeout: 10 * time.Second}
	lim := limits{MinN: 1, MinDur: b.set.StaticDur, MaxN: 10_000_000, MaxDur: b.set.StaticDur + 5*time.Second}
	for _, doc := range []struct {
		name, url string
		out       *staticResult
	}{
		{"JWKS", r.jwksURL, &b.rep.JWKS},
		{"discovery", r.issuer + "/.well-known/openid-configuration", &b.rep.Discovery},
	} {
		b.logf("%s at concurrency %d", doc.name, c)
		res, err := runLevel(ctx, srv, b.metrics, c, lim, func(int, *[numSteps]time.Duration) error {
			resp, err := hc.Get(doc.url)
			if err != nil {
				return err
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || n == 0 {
				return fmt.Errorf("%s: status %d, %d bytes", doc.name, resp.StatusCode, n)
			}
			return nil
		})
		if err != nil {
			return err
		}
		*doc.out = staticResult{Concurrency: c, Requests: res.N, Seconds: res.Elapsed.Seconds(), PerS: res.perSecond(),
			ServerCPUUsPerReq: float64(res.perOp()) / float64(time.Microsecond), OtherCores: res.otherCores()}
		if res.Failed > 0 {
			return fmt.Errorf("%s: %d requests failed: %s", doc.name, res.Failed, strings.Join(res.Errors, "; "))
		}
	}
	return nil
}

// lockedAccount locks one user's password factor on a second server with
// a strict policy, then sends its correct password at concurrency 16: every
// answer must be 429 and no argon2id hash may run.
func (b *bench) lockedAccount(ctx context.Context) error {
	db := filepath.Join(b.dir, "locked.db")
	const maxFailures = 3
	b.logf("locked account: second server with --password-max-failures %d --password-lock 10m", maxFailures)
	if err := writeSecretKey(db); err != nil {
		return err
	}
	srv, err := startServer(b.bin, db, "--password-max-failures", fmt.Sprint(maxFailures), "--password-lock", "10m")
	if err != nil {
		return err
	}
	defer srv.stop()
	secret, err := addClient(ctx, b.bin, db)
	if err != nil {
		return err
	}
	u, err := addUser(ctx, b.bin, db, "locked", "bench-pw-"+randString())
	if err != nil {
		return err
	}
	r, err := newRP(ctx, srv.issuer, clientID, secret, redirectURI)
	if err != nil {
		return err
	}
	f, err := r.start("openid", nil)
	if err != nil {
		return err
	}
	lr := &b.rep.Locked
	lr.MaxFailures = maxFailures
	locked := false
	for i := 0; i < 10 && !locked; i++ {
		p, err := f.postPassword(u.Name, "wrong password "+fmt.Sprint(i))
		if err != nil {
			return err
		}
		switch p.status {
		case http.StatusTooManyRequests:
			locked = true
		case http.StatusUnauthorized:
			lr.FailuresToLock++
		default:
			return fmt.Errorf("wrong password %d: want 401 or 429, got %d", i+1, p.status)
		}
	}
	if !locked {
		return errors.New("locked account: 10 wrong passwords did not lock the account")
	}
	c := levels[len(levels)-1]
	flows := make([]*flow, c)
	for i := range flows {
		if flows[i], err = r.start("openid", nil); err != nil {
			return err
		}
	}
	b.logf("locked account: correct password at concurrency %d (%s)", c, b.set.LockDur)
	var (
		mu      sync.Mutex
		non429  int
		noRetry int
	)
	res, err := runLevel(ctx, srv, b.metrics, c, limits{MinN: 1, MinDur: b.set.LockDur, MaxN: 10_000_000, MaxDur: b.set.LockDur + 5*time.Second},
		func(w int, _ *[numSteps]time.Duration) error {
			p, err := flows[w].postPassword(u.Name, u.Password)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if p.status != http.StatusTooManyRequests {
				non429++
			} else if p.header.Get("Retry-After") == "" {
				noRetry++
			}
			return nil
		})
	if err != nil {
		return err
	}
	lr.Answers, lr.Seconds, lr.PerS = res.N, res.Elapsed.Seconds(), res.perSecond()
	lr.Non429, lr.WithoutRetryAfter, lr.Hashes = non429, noRetry, res.Hashes
	lr.ServerCPUUsPerAnswer = float64(res.perOp()) / float64(time.Microsecond)
	lr.OtherCores = res.otherCores()
	if res.Failed > 0 {
		return fmt.Errorf("locked account: %d requests failed: %s", res.Failed, strings.Join(res.Errors, "; "))
	}
	return nil
}
