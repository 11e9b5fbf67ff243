package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/argon2"
)

// OWASP argon2id parameters, as password.OWASP (m=19 MiB, t=2, p=1).
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
)

// rate is how many operations ran in how long.
type rate struct {
	N       int
	Elapsed time.Duration
}

func (r rate) perSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.N) / r.Elapsed.Seconds()
}

// repeat runs op on each of workers goroutines until d has passed (at
// least once each, at most maxN in all) and counts completions.
func repeat(workers int, d time.Duration, maxN int, op func() error) (rate, error) {
	var (
		mu    sync.Mutex
		n     int
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				stop := first != nil || n >= maxN || (n > 0 && time.Since(start) >= d)
				mu.Unlock()
				if stop {
					return
				}
				err := op()
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					n++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return rate{N: n, Elapsed: time.Since(start)}, first
}

// bestOf runs measure windows times for d/windows each and keeps the
// fastest window: load from other processes can only slow a window down,
// so the best one is the closest to what an idle machine does.
func bestOf(windows int, d time.Duration, measure func(time.Duration) (rate, error)) (rate, error) {
	var best rate
	for range max(windows, 1) {
		r, err := measure(d / time.Duration(max(windows, 1)))
		if err != nil {
			return r, err
		}
		if best.N == 0 || r.perSecond() > best.perSecond() {
			best = r
		}
	}
	return best, nil
}

// hashRate measures argon2id with the provider's parameters on workers
// goroutines (1: the single-core rate the login ceiling is built from).
func hashRate(workers int, d time.Duration) (rate, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	pw := []byte("correct horse battery staple")
	return repeat(workers, d, 100000, func() error {
		_ = argon2.IDKey(pw, salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
		return nil
	})
}

// jwtSigner signs a typical ID token payload with RS256 and a 2048-bit
// key through go-jose: the work a refresh grant does for its new ID token.
type jwtSigner struct {
	signer  jose.Signer
	payload []byte
}

func newJWTSigner() (*jwtSigner, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "bench"))
	if err != nil {
		return nil, err
	}
	now := time.Now().Unix()
	payload, err := json.Marshal(map[string]any{
		"iss": "http://127.0.0.1:8080", "sub": "f3SIzOqCSQhFHXD1fRJQoA", "aud": []string{"bench"},
		"exp": now + 3600, "iat": now, "auth_time": now, "azp": "bench",
		"amr": []string{"pwd", "otp", "mfa"}, "acr": "http://schemas.openid.net/pape/policies/2007/06/multi-factor",
		"at_hash": "kq0jr5Fr4vU3FZ4Gj4a1Ww", "nonce": "hJzh8Dbf0vN6YX9qZ7Y1cQ",
	})
	if err != nil {
		return nil, err
	}
	return &jwtSigner{signer: signer, payload: payload}, nil
}

// rate measures signing on workers goroutines for d.
func (j *jwtSigner) rate(workers int, d time.Duration) (rate, error) {
	return repeat(workers, d, 1000000, func() error {
		obj, err := j.signer.Sign(j.payload)
		if err != nil {
			return fmt.Errorf("sign: %w", err)
		}
		_, err = obj.CompactSerialize()
		return err
	})
}

// referenceRates measures argon2id and RS256 in this process while no
// server runs: the ceilings the provider's figures are compared with.
func (b *bench) referenceRates() error {
	n := runtime.NumCPU()
	busy0, busyErr := machineBusy()
	self0, t0 := selfCPU(), time.Now()
	defer func() {
		if busy1, err := machineBusy(); err == nil && busyErr == nil {
			other := max(0, busy1-busy0-(selfCPU()-self0))
			b.rep.ReferenceOtherCores = other.Seconds() / time.Since(t0).Seconds()
		}
	}()
	w := b.set.Windows
	b.logf("argon2id single-core rate (best of %d windows in %s)", w, b.set.HashDur)
	r, err := bestOf(w, b.set.HashDur, func(d time.Duration) (rate, error) { return hashRate(1, d) })
	if err != nil {
		return err
	}
	b.rep.Argon2.SingleCorePerS = r.perSecond()
	b.rep.Argon2.MsPerHash = 1000 / r.perSecond()
	b.rep.Argon2.CeilingPerS = r.perSecond() * float64(n)
	b.logf("argon2id on %d goroutines (best of %d windows in %s)", n, w, b.set.ParHashDur)
	if r, err = bestOf(w, b.set.ParHashDur, func(d time.Duration) (rate, error) { return hashRate(n, d) }); err != nil {
		return err
	}
	b.rep.Argon2.ParallelPerS, b.rep.Argon2.ParallelWorkers = r.perSecond(), n
	b.logf("RS256 signing rate (best of %d windows in %s, then on %d goroutines)", w, b.set.SignDur, n)
	js, err := newJWTSigner()
	if err != nil {
		return err
	}
	if r, err = bestOf(w, b.set.SignDur, func(d time.Duration) (rate, error) { return js.rate(1, d) }); err != nil {
		return err
	}
	b.rep.RS256.SingleCorePerS = r.perSecond()
	b.rep.RS256.MsPerSign = 1000 / r.perSecond()
	b.rep.RS256.CeilingPerS = r.perSecond() * float64(n)
	if r, err = bestOf(w, b.set.ParHashDur, func(d time.Duration) (rate, error) { return js.rate(n, d) }); err != nil {
		return err
	}
	b.rep.RS256.ParallelPerS = r.perSecond()
	runtime.GC()
	return nil
}
