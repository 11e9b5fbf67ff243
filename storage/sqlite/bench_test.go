package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

// benchWorkers is the number of concurrent logins the benchmarks simulate.
const benchWorkers = 100

func benchStore(b *testing.B, users int) *Store {
	b.Helper()
	s := openTemp(b, filepath.Join(b.TempDir(), "bench.db"))
	for i := range users {
		if err := s.CreateUser(context.Background(), storage.User{ID: fmt.Sprintf("u%d", i), Username: fmt.Sprintf("user%d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkClaimAttempt measures one attempt-guard round trip of a login
// (ClaimAttempt, then AttemptSucceeded when allowed) with benchWorkers
// goroutines at once, and reports the latency percentiles of that pair.
func BenchmarkClaimAttempt(b *testing.B) {
	b.Run("distinct-users", func(b *testing.B) { benchGuard(b, benchWorkers, benchWorkers, sharedRoundTrip) })
	b.Run("one-user", func(b *testing.B) { benchGuard(b, benchWorkers, 1, sharedRoundTrip) })
	// One goroutine: the pair's own latency, without queueing.
	b.Run("serial", func(b *testing.B) { benchGuard(b, 1, 1, sharedRoundTrip) })
}

// BenchmarkDeviceGuard measures what remembered devices add to a login:
// the password claim on a device's own counter (which replaces the shared
// round trip above) and the renewal of the device when the sign-in
// completes (RememberDevice, one write per completed login).
func BenchmarkDeviceGuard(b *testing.B) {
	b.Run("device-claim", func(b *testing.B) { benchGuard(b, benchWorkers, benchWorkers, deviceClaim) })
	b.Run("remember-device", func(b *testing.B) { benchGuard(b, benchWorkers, benchWorkers, rememberDevice) })
}

// benchPassword is the default password policy's shape (a decaying
// counter; the bench never reaches a lock).
var benchPassword = storage.LockPolicy{FreeFailures: 1 << 20, BaseLock: time.Second, MaxLock: time.Minute, HardLimit: 1 << 30,
	Decay: 24 * time.Hour}

// guardOp is one guarded store operation of worker w's user.
type guardOp func(ctx context.Context, s *Store, user string, w int, now time.Time) error

func sharedRoundTrip(ctx context.Context, s *Store, user string, _ int, now time.Time) error {
	c, err := s.ClaimAttempt(ctx, user, storage.FactorPassword, now, benchPassword)
	if err == nil && c.Allowed {
		err = s.AttemptSucceeded(ctx, user, storage.FactorPassword, c, now, benchPassword)
	}
	return err
}

func benchDevice(w int) []byte { return []byte(fmt.Sprintf("device-%d", w)) }

func deviceClaim(ctx context.Context, s *Store, user string, w int, now time.Time) error {
	_, err := s.ClaimDeviceAttempt(ctx, benchDevice(w), user, now, benchPassword)
	return err
}

func rememberDevice(ctx context.Context, s *Store, user string, w int, now time.Time) error {
	// Renew worker w's device under a new id, as each completed login
	// does; the id it replaces is the one this worker stored last.
	id := []byte(fmt.Sprintf("device-%d-%d", w, now.UnixNano()))
	d := storage.Device{IDHash: id, UserID: user, CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(time.Hour), UserAgent: "bench"}
	return s.RememberDevice(ctx, d, benchDevice(w), 20, now)
}

// benchGuard runs op from workers goroutines at once on users users.
func benchGuard(b *testing.B, workers, users int, op guardOp) {
	ctx := context.Background()
	s := benchStore(b, users)
	now := time.Now()
	for w := range workers {
		d := storage.Device{IDHash: benchDevice(w), UserID: fmt.Sprintf("u%d", w%users), CreatedAt: now, LastUsedAt: now,
			ExpiresAt: now.Add(time.Hour)}
		if err := s.RememberDevice(ctx, d, nil, benchWorkers, now); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("u%d", w%users)
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				start := time.Now()
				err := op(ctx, s, user, w, start)
				lat[i] = time.Since(start)
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	reportPercentiles(b, lat)
}

// BenchmarkClaimAttemptLocked measures the refusal path: a hard-locked
// account under a flood of attempts, which must not take the write lock.
func BenchmarkClaimAttemptLocked(b *testing.B) {
	ctx := context.Background()
	s := benchStore(b, 1)
	p := storage.LockPolicy{FreeFailures: 1, BaseLock: time.Minute, MaxLock: time.Hour, HardLimit: 1}
	now := time.Now()
	if c, err := s.ClaimAttempt(ctx, "u0", storage.FactorPassword, now, p); err != nil || !c.HardLocked {
		b.Fatalf("setup: %+v, %v", c, err)
	}
	b.SetParallelism(benchWorkers / max(1, runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := s.ClaimAttempt(ctx, "u0", storage.FactorPassword, now, p)
			if err != nil || c.Allowed {
				b.Errorf("locked claim: %+v, %v", c, err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := min(len(lat)-1, int(p*float64(len(lat))))
		return float64(lat[i]) / float64(time.Microsecond)
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
