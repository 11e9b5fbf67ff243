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
	// DecayAt is when the decay of Failures is measured from
	// (LockPolicy.Decay): one failure is forgotten every Decay after it.
	DecayAt int64
	// Claims counts the allowed claims ever made on the counter, and
	// ClaimAt is when the last was: a success gives back its own claim
	// exactly, knowing whether others came after it (Succeeded).
	Claims  int64
	ClaimAt int64
}

// Claim is the attempt guard's one decision, shared by every backend so
// that none can change the arithmetic (docs/THREAT-MODEL.md rules 3–4 and
// 9): a locked counter is refused and stays unchanged; otherwise the
// attempt is counted as a failure before anything is verified, and the
// lock that failure earns is set at once. changed reports whether next must
// be stored. The backend only reads c and writes next in one transaction.
func (p LockPolicy) Claim(c Counter, now time.Time) (claim AttemptClaim, next Counter, changed bool) {
	nowU := now.Unix()
	if p.Refused(c, now) {
		return p.refusal(c, now), c, false
	}
	failures, decayAt := p.decayed(c, nowU)
	if failures == 0 {
		decayAt = nowU
	}
	next = Counter{Failures: failures + 1, BudgetLevel: c.BudgetLevel, BudgetAt: c.BudgetAt, DecayAt: decayAt,
		Claims: c.Claims + 1, ClaimAt: nowU}
	lock := p.LockFor(next.Failures)
	if lock > 0 {
		next.LockedUntil = nowU + ceilSeconds(lock)
	}
	atLimit := p.HardLimit > 0 && next.Failures >= p.HardLimit
	if p.Decay > 0 {
		// A decaying counter has no hard lock: at the limit it refuses
		// until its oldest failure is forgotten (NIST SP 800-63B-4
		// §3.2.2: never more than HardLimit failures held at once).
		if atLimit {
			lock = max(lock, time.Duration(next.DecayAt+p.decaySeconds()-nowU)*time.Second)
		}
	} else {
		next.HardLocked = atLimit
	}
	if p.Budget > 0 {
		next.BudgetLevel = p.leak(c.BudgetLevel, c.BudgetAt, nowU) + 1
		next.BudgetAt = nowU
		// The claim that fills the bucket is allowed (it is the
		// Budget-th failure in the window); every later one is refused.
		next.BudgetSpent = next.BudgetLevel > float64(p.Budget)-1
	}
	hard := next.HardLocked || next.BudgetSpent
	return AttemptClaim{Allowed: true, RetryAfter: lock, Failures: next.Failures, HardLocked: hard, AtLimit: atLimit || hard,
		Seq: next.Claims}, next, true
}

// decayed is c's failure count at now under Decay, and the time the decay
// of what is left is measured from: whole failures are forgotten one per
// Decay, the part of a period already run is kept.
func (p LockPolicy) decayed(c Counter, now int64) (int, int64) {
	if p.Decay <= 0 || c.Failures == 0 || now <= c.DecayAt {
		return c.Failures, c.DecayAt
	}
	d := p.decaySeconds()
	k := (now - c.DecayAt) / d
	if k >= int64(c.Failures) {
		return 0, now
	}
	return c.Failures - int(k), c.DecayAt + k*d
}

func (p LockPolicy) decaySeconds() int64 { return max(1, ceilSeconds(p.Decay)) }

// Refused reports whether c refuses an attempt at now without a write.
func (p LockPolicy) Refused(c Counter, now time.Time) bool {
	if c.HardLocked || c.BudgetSpent || c.LockedUntil > now.Unix() {
		return true
	}
	if p.Decay > 0 && p.HardLimit > 0 {
		f, _ := p.decayed(c, now.Unix())
		return f >= p.HardLimit
	}
	return false
}

// ForgetAt is when c becomes the same as no counter at all (no failure
// left, no lock, an empty budget): a backend may delete it then, and must
// treat a counter it deleted exactly like one it kept. It is the end of
// time while c holds anything that only an operator or a success ends.
func (p LockPolicy) ForgetAt(c Counter) int64 {
	if c.HardLocked || c.BudgetSpent || (c.Failures > 0 && p.Decay <= 0) {
		return math.MaxInt64
	}
	t := c.LockedUntil
	if c.Failures > 0 {
		t = max(t, c.DecayAt+int64(c.Failures)*p.decaySeconds())
	}
	if c.BudgetLevel > 0 {
		if p.Budget <= 0 || p.BudgetWindow <= 0 {
			return math.MaxInt64
		}
		perFailure := p.BudgetWindow.Seconds() / float64(p.Budget)
		t = max(t, c.BudgetAt+int64(math.Ceil(c.BudgetLevel*perFailure)))
	}
	return t
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

// Succeeded is the counter after a success: the consecutive failures and
// their lock end. The budget gives back only the one failure its own claim
// counted (the attempt turned out right) and refills nothing else: an
// attacker who knows the password gets no new guesses from the owner's
// logins. A success can follow a spent budget only when the claim that
// spent it was this right answer, so the budget is no longer spent.
//
// It is for policies without Decay (the second factor). A decaying
// counter (the password's) is never reset by a success: anyone who knows
// a name can fill it, and a reset by the owner's login is exactly what
// would tell an account from a name without one (docs/THREAT-MODEL.md rule 9).
func (c Counter) Succeeded() Counter {
	return Counter{BudgetLevel: max(0, c.BudgetLevel-1), BudgetAt: c.BudgetAt}
}

// Succeeded is c after the attempt of claim turned out right (see
// Store.AttemptSucceeded): a consecutive counter is reset
// (Counter.Succeeded); a decaying one gets back exactly the failure the
// claim counted, and its lock is the one the failures left would have set:
//
//   - no claim since this one: no lock (this claim was allowed, so no
//     earlier lock was running, and the one it set is withdrawn);
//   - later claims: each counted this one too, and the last of them, at
//     ClaimAt, set the lock for one failure more than remains; it is
//     recomputed for the count without this claim.
//
// So a decaying counter ends as if the right attempt had never been made,
// which is what a name without an account, that no attempt ever matches,
// holds too. What cannot be undone is an answer given meanwhile: a claim
// made between this one and its success saw one failure more (a lock or
// the limit one attempt early). The login takes its hashing slot before it
// claims, so that window is one hash (docs/THREAT-MODEL.md rule 3).
func (p LockPolicy) Succeeded(c Counter, claim AttemptClaim, now time.Time) Counter {
	if p.Decay <= 0 {
		return c.Succeeded()
	}
	later := c.Claims != claim.Seq
	failures := c.Failures
	f, at := p.decayed(c, now.Unix())
	c.Failures, c.DecayAt = max(0, f-1), at
	c.LockedUntil = 0
	if later {
		if lock := p.LockFor(failures - 1); lock > 0 {
			c.LockedUntil = c.ClaimAt + ceilSeconds(lock)
		}
	}
	return c
}

// refusal builds the answer for a locked counter.
func (p LockPolicy) refusal(c Counter, now time.Time) AttemptClaim {
	hard := c.HardLocked || c.BudgetSpent
	nowU := now.Unix()
	f, decayAt := p.decayed(c, nowU)
	a := AttemptClaim{Allowed: false, Failures: f, HardLocked: hard}
	left := time.Duration(c.LockedUntil-nowU) * time.Second
	if p.Decay > 0 && p.HardLimit > 0 && f >= p.HardLimit {
		// Until enough failures are forgotten to fall below the limit.
		left = max(left, time.Duration(decayAt+int64(f-p.HardLimit+1)*p.decaySeconds()-nowU)*time.Second)
	}
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
