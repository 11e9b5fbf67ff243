package storage

import (
	"math"
	"time"
)

// Counter is the stored state of one failure counter (an account's factor
// or an unknown username). Times are whole unix seconds.
type Counter struct {
	Failures    int
	LockedUntil int64 // unix seconds; the counter is locked while now < LockedUntil
	HardLocked  bool
	// The failure budget (LockPolicy.Budget): a leaky bucket of failures
	// at BudgetAt, which no success empties; BudgetSpent when it is full.
	BudgetLevel float64
	BudgetAt    int64
	BudgetSpent bool
}

// Claim is the attempt guard's one decision, shared by every backend so
// that none can change the arithmetic (README, security model rules 3–4 and
// 9): a locked counter is refused and stays unchanged; otherwise the
// attempt is counted as a failure before anything is verified, and the
// lock that failure earns is set at once. changed reports whether next must
// be stored. The backend only reads c and writes next in one transaction.
func (p LockPolicy) Claim(c Counter, now time.Time) (claim AttemptClaim, next Counter, changed bool) {
	nowU := now.Unix()
	if c.Refused(now) {
		return p.refusal(c, now), c, false
	}
	next = Counter{Failures: c.Failures + 1, BudgetLevel: c.BudgetLevel, BudgetAt: c.BudgetAt}
	lock := p.LockFor(next.Failures)
	if lock > 0 {
		next.LockedUntil = nowU + ceilSeconds(lock)
	}
	next.HardLocked = p.HardLimit > 0 && next.Failures >= p.HardLimit
	if p.Budget > 0 {
		next.BudgetLevel = p.leak(c.BudgetLevel, c.BudgetAt, nowU) + 1
		next.BudgetAt = nowU
		// The claim that fills the bucket is allowed (it is the
		// Budget-th failure in the window); every later one is refused.
		next.BudgetSpent = next.BudgetLevel > float64(p.Budget)-1
	}
	hard := next.HardLocked || next.BudgetSpent
	return AttemptClaim{Allowed: true, RetryAfter: lock, Failures: next.Failures, HardLocked: hard}, next, true
}

// leak is the bucket's level at now: one failure leaks out every
// BudgetWindow/Budget since at.
func (p LockPolicy) leak(level float64, at, now int64) float64 {
	if p.BudgetWindow <= 0 || now <= at {
		return level
	}
	perFailure := p.BudgetWindow.Seconds() / float64(p.Budget)
	return max(0, level-float64(now-at)/perFailure)
}

// Refused reports whether c refuses an attempt at now without a write.
func (c Counter) Refused(now time.Time) bool {
	return c.HardLocked || c.BudgetSpent || c.LockedUntil > now.Unix()
}

// Succeeded is the counter after a success: the consecutive failures and
// their lock end. The budget gives back only the one failure its own claim
// counted (the attempt turned out right) and refills nothing else: an
// attacker who knows the password gets no new guesses from the owner's
// logins. A success can follow a spent budget only when the claim that
// spent it was this right answer, so the budget is no longer spent.
func (c Counter) Succeeded() Counter {
	return Counter{BudgetLevel: max(0, c.BudgetLevel-1), BudgetAt: c.BudgetAt}
}

// refusal builds the answer for a locked counter.
func (p LockPolicy) refusal(c Counter, now time.Time) AttemptClaim {
	hard := c.HardLocked || c.BudgetSpent
	a := AttemptClaim{Allowed: false, Failures: c.Failures, HardLocked: hard}
	left := time.Duration(c.LockedUntil-now.Unix()) * time.Second
	if hard {
		// The lock has no end; MaxLock is a sensible Retry-After hint.
		a.RetryAfter = max(p.MaxLock, left, time.Second)
	} else {
		a.RetryAfter = left
	}
	return a
}

// LockFor is the lock a claim sets when it brings the consecutive failure
// count to failures: BaseLock·2^(failures-FreeFailures), capped at MaxLock
// (MaxLock ≤ 0: no cap), and 0 below FreeFailures.
func (p LockPolicy) LockFor(failures int) time.Duration {
	if failures < p.FreeFailures || p.BaseLock <= 0 {
		return 0
	}
	d := p.BaseLock
	for k := failures - p.FreeFailures; k > 0; k-- {
		if p.MaxLock > 0 && d >= p.MaxLock {
			break
		}
		if d > math.MaxInt64/2 {
			break // no overflow when uncapped
		}
		d *= 2
	}
	if p.MaxLock > 0 && d > p.MaxLock {
		d = p.MaxLock
	}
	return d
}

// ceilSeconds rounds a lock up to whole seconds (locks are stored in unix
// seconds; rounding down could shorten a lock to nothing).
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
