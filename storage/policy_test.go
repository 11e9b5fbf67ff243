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

// TestClaimBudget: the budget's bucket fills with failures, is not emptied
// by Succeeded, leaks one failure per BudgetWindow/Budget, and the claim
// that fills it hard-locks the counter for good.
func TestClaimBudget(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	p := LockPolicy{FreeFailures: 10, BaseLock: time.Minute, MaxLock: time.Hour, HardLimit: 50, Budget: 4, BudgetWindow: 4 * time.Hour}
	var c Counter
	for i := range 3 {
		// A failure, then the owner's successful attempt (claimed, then
		// given back by Succeeded).
		claim, next, _ := p.Claim(c, now)
		if !claim.Allowed || claim.HardLocked {
			t.Fatalf("failure %d: %+v", i+1, claim)
		}
		_, next, _ = p.Claim(next, now)
		c = next.Succeeded()
	}
	if c.Failures != 0 || c.BudgetLevel != 3 {
		t.Fatalf("after three failures each followed by a success: %+v", c)
	}
	// One hour leaks one failure: two more fit, the second fills it.
	now = now.Add(time.Hour)
	claim, c, _ := p.Claim(c, now)
	if !claim.Allowed || claim.HardLocked || c.BudgetLevel != 3 {
		t.Fatalf("after the leak: %+v %+v", claim, c)
	}
	claim, c, _ = p.Claim(c, now)
	if !claim.Allowed || !claim.HardLocked || !c.BudgetSpent {
		t.Fatalf("the filling claim: %+v %+v", claim, c)
	}
	if refused, _, changed := p.Claim(c, now.Add(10000*time.Hour)); refused.Allowed || changed || !refused.HardLocked {
		t.Fatalf("a spent budget ended by time: %+v", refused)
	}
	// Had the filling claim been the right answer, it is given back.
	if back := c.Succeeded(); back.BudgetSpent || back.BudgetLevel != 3 {
		t.Fatalf("a right answer on the last unit of the budget: %+v", back)
	}
	// Budget 0: no budget, as before.
	var free Counter
	for range 40 {
		_, free, _ = LockPolicy{FreeFailures: 100, HardLimit: 100}.Claim(free, now)
		free = free.Succeeded()
	}
	if free.BudgetSpent || free.BudgetLevel != 0 {
		t.Fatalf("Budget 0 counted a budget: %+v", free)
	}
}
