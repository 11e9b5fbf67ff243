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
}

// Claim is the attempt guard's one decision, shared by every backend so
// that none can change the arithmetic (README, security model rules 3–4 and
// 9): a locked counter is refused and stays unchanged; otherwise the
// attempt is counted as a failure before anything is verified, and the
// lock that failure earns is set at once. changed reports whether next must
// be stored. The backend only reads c and writes next in one transaction.
func (p LockPolicy) Claim(c Counter, now time.Time) (claim AttemptClaim, next Counter, changed bool) {
	nowU := now.Unix()
	if c.HardLocked || c.LockedUntil > nowU {
		return p.refusal(c, now), c, false
	}
	next = Counter{Failures: c.Failures + 1}
	lock := p.LockFor(next.Failures)
	if lock > 0 {
		next.LockedUntil = nowU + ceilSeconds(lock)
	}
	next.HardLocked = p.HardLimit > 0 && next.Failures >= p.HardLimit
	return AttemptClaim{Allowed: true, RetryAfter: lock, Failures: next.Failures, HardLocked: next.HardLocked}, next, true
}

// Refused reports whether c refuses an attempt at now without a write.
func (c Counter) Refused(now time.Time) bool { return c.HardLocked || c.LockedUntil > now.Unix() }

// refusal builds the answer for a locked counter.
func (p LockPolicy) refusal(c Counter, now time.Time) AttemptClaim {
	a := AttemptClaim{Allowed: false, Failures: c.Failures, HardLocked: c.HardLocked}
	left := time.Duration(c.LockedUntil-now.Unix()) * time.Second
	if c.HardLocked {
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
