package postgres

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

// benchWorkers is the number of concurrent logins the benchmarks simulate,
// as for SQLite (storage/sqlite/bench_test.go).
const benchWorkers = 100

var benchPassword = storage.LockPolicy{FreeFailures: 1 << 20, BaseLock: time.Second, MaxLock: time.Minute, HardLimit: 1 << 30,
	Decay: 24 * time.Hour}

// BenchmarkClaimAttempt measures one attempt-guard round trip of a login
// (ClaimAttempt, then AttemptSucceeded) with benchWorkers goroutines at
// once on one PostgreSQL store, and reports its latency percentiles (make
// bench; the target is p99 ≤ 10 ms).
func BenchmarkClaimAttempt(b *testing.B) {
	b.Run("distinct-users", func(b *testing.B) { benchGuard(b, benchWorkers, benchWorkers) })
	b.Run("one-user", func(b *testing.B) { benchGuard(b, benchWorkers, 1) })
	// One goroutine: the pair's own latency, without queueing.
	b.Run("serial", func(b *testing.B) { benchGuard(b, 1, 1) })
}

// benchGuard runs the pair from workers goroutines at once on users users.
func benchGuard(b *testing.B, workers, users int) {
	ctx := context.Background()
	s := openTest(b, freshDatabase(b), OpenOptions{})
	for i := range users {
		if err := s.CreateUser(ctx, storage.User{ID: fmt.Sprintf("u%d", i), Username: fmt.Sprintf("user%d", i)}); err != nil {
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
				c, err := s.ClaimAttempt(ctx, user, storage.FactorPassword, start, benchPassword)
				if err == nil && c.Allowed {
					err = s.AttemptSucceeded(ctx, user, storage.FactorPassword, c, start, benchPassword)
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
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Microsecond)
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
