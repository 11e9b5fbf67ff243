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

// TestClaimDecay: a decaying counter forgets one failure per Decay (the
// part of a period already run is kept), never hard-locks, refuses while it
// holds HardLimit failures and says until when, and the number of failed
// claims over a period T never exceeds HardLimit + T/Decay.
func TestClaimDecay(t *testing.T) {
	t0 := time.Unix(1_900_000_000, 0)
	p := LockPolicy{FreeFailures: 2, BaseLock: time.Second, MaxLock: 4 * time.Second, HardLimit: 5, Decay: 100 * time.Second}
	var c Counter
	now := t0
	for i := range 5 {
		now = now.Add(10 * time.Second) // past every lock (MaxLock 4 s)
		claim, next, changed := p.Claim(c, now)
		if !claim.Allowed || !changed || claim.HardLocked || next.HardLocked || next.Failures != i+1 {
			t.Fatalf("claim %d: %+v %+v", i+1, claim, next)
		}
		if i == 4 && (!claim.AtLimit || claim.RetryAfter != 60*time.Second) {
			// Decay measured from the first failure at t0+10s: the
			// oldest is forgotten at t0+110s, 60 s after this claim.
			t.Fatalf("the claim reaching the limit: %+v", claim)
		}
		c = next
	}
	if c.DecayAt != t0.Add(10*time.Second).Unix() {
		t.Fatalf("decay measured from %d, want the first failure", c.DecayAt)
	}
	refused, _, changed := p.Claim(c, t0.Add(109*time.Second))
	if refused.Allowed || changed || refused.HardLocked || refused.RetryAfter != time.Second {
		t.Fatalf("at the limit one second before a failure is forgotten: %+v", refused)
	}
	// At t0+110 s one failure is forgotten: one claim, then the limit again.
	claim, c, _ := p.Claim(c, t0.Add(110*time.Second))
	if !claim.Allowed || claim.Failures != 5 || c.DecayAt != t0.Add(110*time.Second).Unix() {
		t.Fatalf("after one decay: %+v %+v", claim, c)
	}
	// 250 s later (2.5 periods) two more are forgotten and the half period
	// is kept.
	f, at := p.decayed(c, t0.Add(360*time.Second).Unix())
	if f != 3 || at != t0.Add(310*time.Second).Unix() {
		t.Fatalf("decayed = %d from %d", f, at)
	}
	// After Failures·Decay the counter is the same as none: ForgetAt.
	if got, want := p.ForgetAt(c), t0.Add(110*time.Second+500*time.Second).Unix(); got != want {
		t.Fatalf("ForgetAt = %d, want %d", got, want)
	}
	if f, _ := p.decayed(c, p.ForgetAt(c)); f != 0 {
		t.Fatalf("at ForgetAt %d failures are left", f)
	}
	// Whatever the pacing, failed claims over T stay ≤ HardLimit + T/Decay.
	for _, step := range []time.Duration{time.Second, 7 * time.Second, 33 * time.Second, 99 * time.Second, 101 * time.Second} {
		var c Counter
		allowed := 0
		T := 3000 * time.Second
		for now := t0; now.Before(t0.Add(T)); now = now.Add(step) {
			claim, next, _ := p.Claim(c, now)
			if claim.Allowed {
				allowed++
			}
			c = next
		}
		if bound := p.HardLimit + int(T/p.Decay); allowed > bound {
			t.Errorf("pacing %s: %d failed claims in %s, bound %d", step, allowed, T, bound)
		}
	}
}

// TestForgetAt: counters that hold something only an operator or a
// success ends are never forgotten; a lock and a budget delay it.
func TestForgetAt(t *testing.T) {
	never := int64(1<<63 - 1)
	decaying := LockPolicy{FreeFailures: 1, HardLimit: 10, Decay: 10 * time.Second, Budget: 4, BudgetWindow: 4 * time.Hour}
	for _, tc := range []struct {
		name string
		p    LockPolicy
		c    Counter
		want int64
	}{
		{"empty", decaying, Counter{}, 0},
		{"hard locked", decaying, Counter{HardLocked: true}, never},
		{"budget spent", decaying, Counter{BudgetSpent: true}, never},
		{"consecutive failures without decay", testPolicy, Counter{Failures: 1}, never},
		{"lock outlasts decay", decaying, Counter{Failures: 1, DecayAt: 100, LockedUntil: 500}, 500},
		{"decay outlasts lock", decaying, Counter{Failures: 3, DecayAt: 100, LockedUntil: 105}, 130},
		{"budget leaks last", decaying, Counter{Failures: 1, DecayAt: 100, BudgetLevel: 2, BudgetAt: 100}, 100 + 2*3600},
	} {
		if got := tc.p.ForgetAt(tc.c); got != tc.want {
			t.Errorf("%s: ForgetAt = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestSucceededDecaying: a right attempt on a decaying counter leaves it
// answering every later claim exactly as if it had not been made, lock
// included; a lock some other claim set stays.
func TestSucceededDecaying(t *testing.T) {
	t0 := time.Unix(1_900_000_000, 0)
	p := LockPolicy{FreeFailures: 3, BaseLock: 10 * time.Second, MaxLock: 40 * time.Second, HardLimit: 6, Decay: 100 * time.Second}
	for before := range 6 {
		var c Counter
		for i := range before {
			_, c, _ = p.Claim(c, t0.Add(time.Duration(i)*50*time.Second))
		}
		at := t0.Add(time.Duration(before)*50*time.Second + 45*time.Second)
		claim, next, _ := p.Claim(c, at)
		if !claim.Allowed {
			continue
		}
		with := p.Succeeded(next, claim, at)
		for _, d := range []time.Duration{0, time.Second, 30 * time.Second, 99 * time.Second, 500 * time.Second} {
			a, _, _ := p.Claim(with, at.Add(d))
			b, _, _ := p.Claim(c, at.Add(d))
			a.Seq, b.Seq = 0, 0 // the right attempt was numbered too
			if a != b {
				t.Errorf("%d failures before, claim +%s: after a right attempt %+v, without it %+v", before, d, a, b)
			}
		}
	}
	// A wrong attempt claimed between a right one and its success: the
	// counter then answers like one that only ever saw the wrong attempt
	// (its lock recomputed for the count without the right one).
	for before := range 6 {
		var c Counter
		for i := range before {
			_, c, _ = p.Claim(c, t0.Add(time.Duration(i)*50*time.Second))
		}
		at := t0.Add(time.Duration(before)*50*time.Second + 45*time.Second)
		right, withRight, _ := p.Claim(c, at)
		wrong, withBoth, _ := p.Claim(withRight, at.Add(time.Second))
		if !right.Allowed || !wrong.Allowed {
			continue
		}
		refunded := p.Succeeded(withBoth, right, at.Add(2*time.Second))
		_, onlyWrong, _ := p.Claim(c, at.Add(time.Second))
		for _, d := range []time.Duration{2 * time.Second, 5 * time.Second, 30 * time.Second, 99 * time.Second, 500 * time.Second} {
			a, _, _ := p.Claim(refunded, at.Add(d))
			b, _, _ := p.Claim(onlyWrong, at.Add(d))
			a.Seq, b.Seq = 0, 0
			if a != b {
				t.Errorf("%d failures before, a wrong attempt during a right one, claim +%s: %+v, with only the wrong one %+v", before, d, a, b)
			}
		}
	}
}
