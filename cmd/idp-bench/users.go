package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// benchUser is an account created through the CLI, with the TOTP secret
// from its provisioning URI.
type benchUser struct {
	ID, Name, Password string
	Secret             string

	lastStep int64 // TOTP step of its last login; replay protection allows one per step
	inUse    bool
	broken   bool
}

// code is the user's TOTP code at t, computed independently of the
// server; it returns the RFC 6238 step too.
func (u *benchUser) code(t time.Time) (string, int64, error) {
	c, err := totp.GenerateCodeCustom(u.Secret, t, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	return c, t.Unix() / 30, err
}

// userPool hands out users that can still log in during the current TOTP
// step: the provider accepts one login per user and step (RFC 6238 §5.2).
type userPool struct {
	mu    sync.Mutex
	users []*benchUser
	next  int
}

var errNoUser = errors.New("no user left that can log in during this TOTP step")

func (p *userPool) acquire(now time.Time) (*benchUser, error) {
	step := now.Unix() / 30
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.users {
		u := p.users[(p.next+i)%len(p.users)]
		if !u.inUse && !u.broken && u.lastStep < step {
			u.inUse = true
			p.next = (p.next + i + 1) % len(p.users)
			return u, nil
		}
	}
	return nil, errNoUser
}

// release returns u; a user whose login failed part-way is not used again.
func (p *userPool) release(u *benchUser, step int64, failed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u.inUse = false
	if step > u.lastStep {
		u.lastStep = step
	}
	if failed {
		u.broken = true
	}
}

// usersNeeded estimates the accounts the login levels can use up (one
// login per account and TOTP step), with a margin.
func (b *bench) usersNeeded() int {
	// A login cannot outrun its hash: the single-goroutine rate bounds
	// c=1, the measured parallel rate the others.
	need := func(perS float64) int {
		return max(b.set.Login.MinN, int(perS*b.set.Login.MinDur.Seconds()*1.05)+1)
	}
	n := warmupLogins + levels[len(levels)-1] + 4 // warm-up, refresh chains, margin
	for _, c := range levels {
		// Load from other processes may have slowed the parallel
		// measurement; do not let it starve the levels of users.
		perS := b.rep.Argon2.SingleCorePerS
		if c > 1 {
			perS = max(b.rep.Argon2.ParallelPerS, 0.9*perS*float64(min(c, runtime.NumCPU())))
		}
		n += need(perS)
	}
	return min(n, b.set.MaxUsers)
}

// createUsers adds n users through the CLI, in parallel (each costs a
// process start and argon2id work).
func (b *bench) createUsers(ctx context.Context, db string, n int) ([]*benchUser, error) {
	users := make([]*benchUser, n)
	jobs := make(chan int)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range runtime.NumCPU() * 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				u, err := addUser(ctx, b.bin, db, fmt.Sprintf("bench%04d", i), "bench-pw-"+randString())
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				users[i] = u
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return users, first
}

func addUser(ctx context.Context, bin, db, name, password string) (*benchUser, error) {
	out, err := runCLI(ctx, bin, db, password+"\n", "user", "add", name, "--password-stdin", "--json")
	if err != nil {
		return nil, err
	}
	var raw struct {
		ID       string `json:"id"`
		Username string `json:"username"`
		TOTPURI  string `json:"totp_uri"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("user add output %q: %w", out, err)
	}
	key, err := otp.NewKeyFromURL(raw.TOTPURI)
	if err != nil {
		return nil, fmt.Errorf("totp uri of %s: %w", name, err)
	}
	return &benchUser{ID: raw.ID, Name: raw.Username, Password: password, Secret: key.Secret()}, nil
}

func addClient(ctx context.Context, bin, db string) (string, error) {
	out, err := runCLI(ctx, bin, db, "", "client", "add", clientID, "--redirect-uri", redirectURI, "--json")
	if err != nil {
		return "", err
	}
	var r struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.ClientSecret == "" {
		return "", fmt.Errorf("client add output %q: %v", out, err)
	}
	return r.ClientSecret, nil
}
