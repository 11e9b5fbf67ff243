package storage

import (
	"testing"
	"time"
)

var testPolicy = LockPolicy{FreeFailures: 5, BaseLock: 15 * time.Minute, MaxLock: 4 * time.Hour, HardLimit: 20}

// TestLockFor checks the doubling and its caps.
func TestLockFor(t *testing.T) {
	for _, tc := range []struct {
		failures int
		p        LockPolicy
		want     time.Duration
	}{
		{4, testPolicy, 0},
		{5, testPolicy, 15 * time.Minute},
		{6, testPolicy, 30 * time.Minute},
		{9, testPolicy, 4 * time.Hour},
		{1000, testPolicy, 4 * time.Hour},
		{3, LockPolicy{FreeFailures: 1}, 0},
	} {
		if got := tc.p.LockFor(tc.failures); got != tc.want {
			t.Errorf("LockFor(%d, %+v) = %v, want %v", tc.failures, tc.p, got, tc.want)
		}
	}
	// Uncapped doubling saturates instead of overflowing.
	if got := (LockPolicy{FreeFailures: 1, BaseLock: time.Hour}).LockFor(1000); got < 100*365*24*time.Hour {
		t.Errorf("uncapped LockFor overflowed: %v", got)
	}
}

// TestClaim walks a counter through the policy: free failures, the lock
// set by the claim itself, refusal without change, whole-second rounding,
// the hard lock.
func TestClaim(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	p := LockPolicy{FreeFailures: 2, BaseLock: 1500 * time.Millisecond, MaxLock: 10 * time.Second, HardLimit: 4}
	var c Counter
	claim, c, changed := p.Claim(c, now)
	if !claim.Allowed || !changed || c.Failures != 1 || c.LockedUntil != 0 {
		t.Fatalf("first claim: %+v %+v", claim, c)
	}
	claim, c, _ = p.Claim(c, now)
	// 1.5 s rounds up to 2 s.
	if !claim.Allowed || claim.RetryAfter != 1500*time.Millisecond || c.LockedUntil != now.Unix()+2 {
		t.Fatalf("second claim: %+v %+v", claim, c)
	}
	refused, same, changed := p.Claim(c, now.Add(time.Second))
	if refused.Allowed || changed || same != c || refused.RetryAfter != time.Second {
		t.Fatalf("claim while locked: %+v changed=%v", refused, changed)
	}
	claim, c, _ = p.Claim(c, now.Add(2*time.Second))
	if !claim.Allowed || claim.HardLocked || c.Failures != 3 {
		t.Fatalf("claim after the lock: %+v %+v", claim, c)
	}
	claim, c, _ = p.Claim(c, now.Add(time.Hour))
	if !claim.Allowed || !claim.HardLocked || !c.HardLocked {
		t.Fatalf("claim reaching HardLimit: %+v %+v", claim, c)
	}
	refused, _, changed = p.Claim(c, now.Add(1000*time.Hour))
	if refused.Allowed || changed || !refused.HardLocked || refused.RetryAfter < p.MaxLock {
		t.Fatalf("hard lock does not end by time: %+v", refused)
	}
}
