package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

// decayPolicy is a password policy that decays (LockPolicy.Decay).
var decayPolicy = storage.LockPolicy{FreeFailures: 3, BaseLock: time.Minute, MaxLock: 4 * time.Minute, HardLimit: 6,
	Decay: time.Hour}

// testAttemptDecay: an account's password counter and an unknown name's
// follow the same rules over time whatever happens in between: the same
// claims give the same answers, the owner's right attempts give back only
// themselves (they neither reset the counter nor leave a trace), the limit
// ends by decay for both, and GC forgets both at the same moment. A backend must
// not be able to tell them apart.
func testAttemptDecay(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p := decayPolicy
	u := addUser(t, s, "u1")
	// Seq is each counter's own numbering of its claims (the owner's are
	// numbered too); everything else must be equal.
	account := func(now time.Time) storage.AttemptClaim {
		c, err := s.ClaimAttempt(ctx, u.ID, storage.FactorPassword, now, p)
		ok(t, err, "ClaimAttempt")
		c.Seq = 0
		return c
	}
	unknown := func(now time.Time) storage.AttemptClaim {
		c, err := s.ClaimUnknownAttempt(ctx, "k1", now, p)
		ok(t, err, "ClaimUnknownAttempt")
		c.Seq = 0
		return c
	}
	// A schedule: bursts, waits inside locks, waits past decays, GC runs.
	var steps []time.Duration
	for range 8 {
		steps = append(steps, 0)
	}
	for range 6 {
		steps = append(steps, 5*time.Minute) // past MaxLock: allowed until the limit
	}
	steps = append(steps, 30*time.Minute, 31*time.Minute, time.Hour, 10*time.Second, 2*time.Hour, 0, 0, 0, 0)
	// The owner signs in between the attacker's attempts (her right
	// attempts are claimed, then given back); the name without an account
	// sees only the attacker's.
	owner := func(now time.Time) {
		c, err := s.ClaimAttempt(ctx, u.ID, storage.FactorPassword, now, p)
		ok(t, err, "owner's claim")
		if c.Allowed {
			ok(t, s.AttemptSucceeded(ctx, u.ID, storage.FactorPassword, c, now, p), "AttemptSucceeded")
		}
	}
	now := t0
	for i, d := range steps {
		now = now.Add(d)
		if i%5 == 4 {
			_, err := s.GC(ctx, now)
			ok(t, err, "GC")
		}
		if i%3 == 1 {
			owner(now)
		}
		a, k := account(now), unknown(now)
		if a != k {
			t.Fatalf("step %d at +%s: account %+v, unknown name %+v", i, now.Sub(t0), a, k)
		}
		if a.HardLocked {
			t.Fatalf("step %d: a decaying counter hard-locked: %+v", i, a)
		}
	}
	// The limit holds: after 6 failures in a burst both refuse, until an
	// hour has forgotten one.
	now = now.Add(100 * time.Hour)
	first := now.Add(5 * time.Minute)
	for i := range p.HardLimit {
		now = now.Add(5 * time.Minute)
		if a, k := account(now), unknown(now); !a.Allowed || a != k {
			t.Fatalf("fresh claim %d: account %+v, unknown %+v", i+1, a, k)
		}
	}
	a, k := account(now.Add(5*time.Minute)), unknown(now.Add(5*time.Minute))
	if a.Allowed || a != k || a.RetryAfter <= 0 || a.RetryAfter > time.Hour {
		t.Fatalf("at the limit: account %+v, unknown %+v", a, k)
	}
	// Both are the same as none once HardLimit decays have run from the
	// first failure: GC deletes neither a second before and both then,
	// and the next claims are first failures again, and equal.
	forget := first.Add(time.Duration(p.HardLimit) * p.Decay)
	n, err := s.GC(ctx, forget.Add(-time.Second))
	ok(t, err, "GC")
	if n != 0 {
		t.Fatalf("GC a second before the counters are empty deleted %d rows", n)
	}
	n, err = s.GC(ctx, forget)
	ok(t, err, "GC")
	if n != 2 {
		t.Fatalf("GC once both counters are empty deleted %d rows, want both password counters", n)
	}
	if a, k := account(forget), unknown(forget); a.Failures != 1 || a != k {
		t.Fatalf("after GC: account %+v, unknown %+v", a, k)
	}
	// A hard lock of a policy without decay is never collected.
	hard := storage.LockPolicy{FreeFailures: 1, HardLimit: 1}
	if c, _ := s.ClaimAttempt(ctx, u.ID, storage.FactorTOTP, now, hard); !c.HardLocked {
		t.Fatalf("hard policy: %+v", c)
	}
	_, err = s.GC(ctx, now.Add(10000*time.Hour))
	ok(t, err, "GC")
	if c, _ := s.ClaimAttempt(ctx, u.ID, storage.FactorTOTP, now.Add(10000*time.Hour), hard); c.Allowed {
		t.Fatalf("GC removed a hard-locked TOTP counter: %+v", c)
	}
}

func device(id, user string, now time.Time) storage.Device {
	return storage.Device{IDHash: hash(id), UserID: user, CreatedAt: now, LastUsedAt: now,
		ExpiresAt: now.Add(24 * time.Hour), UserAgent: "agent " + id}
}

func deviceIDs(ds []storage.Device) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.UserAgent)
	}
	return out
}

// testDevices: a remembered device has its own password counter, which
// neither the account's shared counter nor another device shares; it is
// found only for its own user and while live; the claim reaching its limit
// forgets it; renewal keeps its first sign-in; a user keeps at most
// maxPerUser; unlock clears its counter; ending the user's sessions, a
// deleted user and GC forget it.
func testDevices(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	p := storage.LockPolicy{FreeFailures: 2, BaseLock: time.Minute, MaxLock: 4 * time.Minute, HardLimit: 4, Decay: time.Hour}
	isErr(t, s.RememberDevice(ctx, device("d0", "nobody", now), nil, 5, now), storage.ErrNotFound, "RememberDevice unknown user")
	ok(t, s.RememberDevice(ctx, device("d1", "u1", now), nil, 5, now), "RememberDevice d1")
	ok(t, s.RememberDevice(ctx, device("d2", "u1", now.Add(time.Second)), nil, 5, now), "RememberDevice d2")
	ok(t, s.RememberDevice(ctx, device("e1", "u2", now), nil, 5, now), "RememberDevice e1")

	// Another user's device, an unknown one, an expired one: not found.
	_, err := s.ClaimDeviceAttempt(ctx, hash("e1"), "u1", now, p)
	isErr(t, err, storage.ErrNotFound, "another user's device")
	_, err = s.ClaimDeviceAttempt(ctx, hash("nope"), "u1", now, p)
	isErr(t, err, storage.ErrNotFound, "unknown device")
	_, err = s.ClaimDeviceAttempt(ctx, hash("d1"), "u1", now.Add(24*time.Hour), p)
	isErr(t, err, storage.ErrNotFound, "expired device")

	// d1's own counter: the policy's schedule, untouched by the shared
	// counter and by d2.
	for i := 1; i <= 2; i++ {
		c, err := s.ClaimDeviceAttempt(ctx, hash("d1"), "u1", now, p)
		ok(t, err, "ClaimDeviceAttempt %d", i)
		if !c.Allowed || c.Failures != i {
			t.Fatalf("device claim %d: %+v", i, c)
		}
	}
	if c, _ := s.ClaimDeviceAttempt(ctx, hash("d1"), "u1", now, p); c.Allowed || c.RetryAfter != time.Minute {
		t.Fatalf("locked device: %+v", c)
	}
	if c := claim(t, s, "u1", storage.FactorPassword, now, p); !c.Allowed || c.Failures != 1 {
		t.Fatalf("shared counter after device failures: %+v", c)
	}
	if c, _ := s.ClaimDeviceAttempt(ctx, hash("d2"), "u1", now, p); !c.Allowed || c.Failures != 1 {
		t.Fatalf("second device: %+v", c)
	}
	ds, err := s.Devices(ctx, "u1", now)
	ok(t, err, "Devices")
	same(t, "devices, most recent first", deviceIDs(ds), []string{"agent d2", "agent d1"})
	if ds[1].Failures != 2 || !ds[1].LockedUntil.Equal(now.Add(time.Minute)) {
		t.Fatalf("d1's counter as listed: %+v", ds[1])
	}
	// Unlock clears device counters too.
	ok(t, s.Unlock(ctx, "u1"), "Unlock")
	if c, _ := s.ClaimDeviceAttempt(ctx, hash("d1"), "u1", now, p); !c.Allowed || c.Failures != 1 {
		t.Fatalf("device after unlock: %+v", c)
	}
	// Up to the limit: the claim reaching it is allowed and forgets the
	// device; its cookie then finds nothing.
	now = now.Add(2 * time.Minute)
	for i := 2; i <= 4; i++ {
		now = now.Add(5 * time.Minute)
		c, err := s.ClaimDeviceAttempt(ctx, hash("d1"), "u1", now, p)
		ok(t, err, "ClaimDeviceAttempt %d", i)
		if !c.Allowed || (i == 4) != c.AtLimit {
			t.Fatalf("device claim %d: %+v", i, c)
		}
	}
	_, err = s.ClaimDeviceAttempt(ctx, hash("d1"), "u1", now, p)
	isErr(t, err, storage.ErrNotFound, "device after its limit")

	// Renewal: the new device keeps the first sign-in; the old is gone.
	// Renewing another user's device forgets nothing of it.
	renewed := device("d2b", "u1", now)
	ok(t, s.RememberDevice(ctx, renewed, hash("d2"), 5, now), "RememberDevice renew")
	_, err = s.ClaimDeviceAttempt(ctx, hash("d2"), "u1", now, p)
	isErr(t, err, storage.ErrNotFound, "renewed device's old id")
	ds, _ = s.Devices(ctx, "u1", now)
	if len(ds) != 1 || !ds[0].CreatedAt.Equal(t0.Add(time.Second)) || ds[0].Failures != 0 {
		t.Fatalf("renewed device: %+v", ds)
	}
	ok(t, s.RememberDevice(ctx, device("d3", "u1", now), hash("e1"), 5, now), "RememberDevice replacing another's")
	if ds, _ := s.Devices(ctx, "u2", now); len(ds) != 1 {
		t.Fatalf("u1's renewal forgot u2's device: %+v", ds)
	}
	// At most maxPerUser: the least recently used go.
	for i := range 4 {
		ok(t, s.RememberDevice(ctx, device("m"+string(rune('a'+i)), "u1", now.Add(time.Duration(i+1)*time.Second)), nil, 3, now), "RememberDevice m")
	}
	ds, _ = s.Devices(ctx, "u1", now)
	same(t, "devices kept", deviceIDs(ds), []string{"agent md", "agent mc", "agent mb"})

	// Ending the user's sessions forgets the devices and counts them.
	e, err := s.EndUserSessions(ctx, "u1", "", now)
	ok(t, err, "EndUserSessions")
	if e.Devices != 3 {
		t.Fatalf("EndUserSessions ended %+v, want 3 devices", e)
	}
	if ds, _ := s.Devices(ctx, "u1", now); len(ds) != 0 {
		t.Fatalf("devices after EndUserSessions: %+v", ds)
	}
	// GC forgets expired devices; deleting the user forgets the rest.
	ok(t, s.RememberDevice(ctx, device("e2", "u2", now), nil, 5, now), "RememberDevice e2")
	_, err = s.GC(ctx, t0.Add(24*time.Hour))
	ok(t, err, "GC")
	if ds, _ := s.Devices(ctx, "u2", t0); len(ds) != 1 || ds[0].UserAgent != "agent e2" {
		t.Fatalf("after GC: %+v", ds)
	}
	ok(t, s.DeleteUser(ctx, "u2"), "DeleteUser")
	_, err = s.ClaimDeviceAttempt(ctx, hash("e2"), "u2", now, p)
	isErr(t, err, storage.ErrNotFound, "device of a deleted user")
}

// testDevicesConcurrent: concurrent claims on one device never evaluate
// more attempts than its policy allows, and the limit forgets it once.
func testDevicesConcurrent(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	ok(t, s.RememberDevice(ctx, device("d1", "u1", t0), nil, 5, t0), "RememberDevice")
	p := storage.LockPolicy{FreeFailures: 10, HardLimit: 4, Decay: time.Hour}
	claims := make([]storage.AttemptClaim, 30)
	errs := together(30, func(i int) error {
		var err error
		claims[i], err = s.ClaimDeviceAttempt(ctx, hash("d1"), "u1", t0, p)
		return err
	})
	allowed, atLimit := 0, 0
	for i, c := range claims {
		if errs[i] == nil && c.Allowed {
			allowed++
		}
		if c.AtLimit {
			atLimit++
		}
	}
	got := tally(errs)
	if allowed != p.HardLimit || atLimit != 1 || got["nil"]+got["notfound"] != 30 {
		t.Fatalf("30 concurrent claims: %d allowed, %d at the limit, errors %v; want %d, 1, only not-found",
			allowed, atLimit, got, p.HardLimit)
	}
}

// testAttemptRefundRace: a wrong attempt claimed while the owner's right
// one is being verified leaves the account's counter exactly where the
// wrong attempt alone leaves an unknown name's: same count, same lock (the
// review's race: the wrong claim, counted one higher, set a lock that
// survived the owner's success).
func testAttemptRefundRace(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p := decayPolicy // 3 free failures, then 1 min doubling to 4 min
	u := addUser(t, s, "u1")
	unknown := func(now time.Time) storage.AttemptClaim {
		c, err := s.ClaimUnknownAttempt(ctx, "k1", now, p)
		ok(t, err, "ClaimUnknownAttempt")
		c.Seq = 0
		return c
	}
	account := func(now time.Time) storage.AttemptClaim {
		c := claim(t, s, u.ID, storage.FactorPassword, now, p)
		c.Seq = 0
		return c
	}
	now := t0
	account(now)
	unknown(now)
	right := claim(t, s, u.ID, storage.FactorPassword, now.Add(time.Second), p) // the owner's: 2, no lock
	if a, k := account(now.Add(2*time.Second)), unknown(now.Add(2*time.Second)); !a.Allowed || !k.Allowed {
		t.Fatalf("the racing wrong claims: account %+v, unknown %+v", a, k)
	}
	ok(t, s.AttemptSucceeded(ctx, u.ID, storage.FactorPassword, right, now.Add(3*time.Second), p), "AttemptSucceeded")
	for _, d := range []time.Duration{4 * time.Second, 5 * time.Second, 70 * time.Second, 71 * time.Second} {
		if a, k := account(now.Add(d)), unknown(now.Add(d)); a != k {
			t.Fatalf("+%s after the race: account %+v, unknown name %+v", d, a, k)
		}
	}
	// Another account and name with 2 failures each. The owner's claim
	// brings the account to the first lock (1 min); a wrong claim allowed
	// after that lock ran out but before her success set the 2 min lock of
	// one failure more: her success recomputes it as the 1 min lock the
	// unknown name got.
	u = addUser(t, s, "u2")
	unknownKey := "k2"
	unknown = func(now time.Time) storage.AttemptClaim {
		c, err := s.ClaimUnknownAttempt(ctx, unknownKey, now, p)
		ok(t, err, "ClaimUnknownAttempt")
		c.Seq = 0
		return c
	}
	now = t0.Add(time.Hour)
	for range 2 {
		account(now)
		unknown(now)
	}
	right = claim(t, s, u.ID, storage.FactorPassword, now, p)
	if right.RetryAfter != time.Minute {
		t.Fatalf("the owner's claim: %+v", right)
	}
	late := now.Add(61 * time.Second)
	if a, k := account(late), unknown(late); !a.Allowed || !k.Allowed || a.RetryAfter != 2*time.Minute || k.RetryAfter != time.Minute {
		t.Fatalf("the late wrong claims: account %+v, unknown %+v", a, k)
	}
	ok(t, s.AttemptSucceeded(ctx, u.ID, storage.FactorPassword, right, late, p), "AttemptSucceeded")
	for _, d := range []time.Duration{62 * time.Second, 120 * time.Second, 121 * time.Second, 122 * time.Second, 10 * time.Hour} {
		if a, k := account(now.Add(d)), unknown(now.Add(d)); a != k {
			t.Fatalf("+%s after the late race: account %+v, unknown name %+v", d, a, k)
		}
	}
}

// testUserNameKey: creating an account takes over its name's unknown-name
// counter (User.NameKey) and deleting it gives the counter back, so that a
// name held at the limit answers the same before and after either.
func testUserNameKey(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p := decayPolicy
	for range p.HardLimit {
		_, err := s.ClaimUnknownAttempt(ctx, "name-key", t0, p)
		ok(t, err, "ClaimUnknownAttempt")
	}
	before, err := s.ClaimUnknownAttempt(ctx, "name-key", t0.Add(time.Second), p)
	ok(t, err, "ClaimUnknownAttempt")
	if before.Allowed {
		t.Fatalf("the name is not at the limit: %+v", before)
	}
	u := storage.User{ID: "u1", Username: "newhire", PasswordHash: "x", CreatedAt: t0, NameKey: "name-key"}
	ok(t, s.CreateUser(ctx, u), "CreateUser")
	got, err := s.UserByID(ctx, "u1")
	ok(t, err, "UserByID")
	if got.NameKey != "name-key" {
		t.Fatalf("NameKey stored as %q", got.NameKey)
	}
	created := claim(t, s, "u1", storage.FactorPassword, t0.Add(time.Second), p)
	before.Seq, created.Seq = 0, 0
	if created != before {
		t.Fatalf("the new account answers %+v, its name answered %+v", created, before)
	}
	// The name's own counter is gone (the account holds it now).
	if c, _ := s.ClaimUnknownAttempt(ctx, "name-key", t0.Add(2*time.Second), p); !c.Allowed || c.Failures != 1 {
		t.Fatalf("the name's counter after the account took it over: %+v", c)
	}
	ok(t, s.DeleteUser(ctx, "u1"), "DeleteUser")
	after, err := s.ClaimUnknownAttempt(ctx, "name-key", t0.Add(3*time.Second), p)
	ok(t, err, "ClaimUnknownAttempt")
	after.Seq = 0
	before.RetryAfter -= 2 * time.Second // asked two seconds later
	if after != before {
		t.Fatalf("the name after the account was deleted answers %+v, before it existed %+v", after, before)
	}
	// Without a NameKey nothing moves.
	addUser(t, s, "u2")
	ok(t, s.DeleteUser(ctx, "u2"), "DeleteUser u2")
}
