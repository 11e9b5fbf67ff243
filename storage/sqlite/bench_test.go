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
	b.Run("distinct-users", func(b *testing.B) { benchClaim(b, benchWorkers) })
	b.Run("one-user", func(b *testing.B) { benchClaim(b, 1) })
}

func benchClaim(b *testing.B, users int) {
	ctx := context.Background()
	s := benchStore(b, users)
	now := time.Now()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range benchWorkers {
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
				c, err := s.ClaimAttempt(ctx, user, storage.FactorPassword, now, policy)
				if err == nil && c.Allowed {
					err = s.AttemptSucceeded(ctx, user, storage.FactorPassword, c, now, policy)
				}
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
