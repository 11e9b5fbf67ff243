package conformance

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

// testSideEffectFreeLookups: AuthRequestByCodeHash and RefreshTokenInfo
// find a code's request and a refresh token in any state and change
// nothing: a used code is not consumed again or revoked, a used refresh
// token's family is not revoked.
func testSideEffectFreeLookups(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	doneRequest(t, s, "ar", "u1", now)
	_, err := s.AuthRequestByCodeHash(ctx, hash("code"))
	isErr(t, err, storage.ErrNotFound, "AuthRequestByCodeHash before the code")
	ok(t, s.SaveAuthCode(ctx, "ar", hash("code"), now, now.Add(time.Minute)), "SaveAuthCode")
	for i := range 3 {
		a, err := s.AuthRequestByCodeHash(ctx, hash("code"))
		ok(t, err, "AuthRequestByCodeHash %d", i)
		if a.ID != "ar" || a.ClientID != "client-a" || a.UserID != "u1" || a.CodeChallenge != "challenge" {
			t.Fatalf("AuthRequestByCodeHash: %+v", a)
		}
	}
	// Still unused: the first consumption succeeds.
	_, err = s.ConsumeAuthCode(ctx, hash("code"), now)
	ok(t, err, "ConsumeAuthCode after lookups")
	at := newAccessToken("at", "u1", "client-a", now)
	at.AuthRequestID = "ar"
	ok(t, s.CreateAccessToken(ctx, at), "CreateAccessToken")
	// A used (and later an expired) code is still found, and the lookup
	// revokes nothing.
	if _, err := s.AuthRequestByCodeHash(ctx, hash("code")); err != nil {
		t.Fatalf("AuthRequestByCodeHash of a used code: %v", err)
	}
	if _, err := s.AuthRequestByCodeHash(ctx, hash("code")); err != nil || !liveAccess(s, "at", now) {
		t.Fatalf("lookup of a used code had a side effect: %v", err)
	}
	_, err = s.AuthRequestByCodeHash(ctx, nil)
	isErr(t, err, storage.ErrNotFound, "AuthRequestByCodeHash empty")

	rt := newRefreshToken("rt", "fam", "u1", "client-a", now)
	ok(t, s.CreateRefreshToken(ctx, rt, storage.AccessToken{}), "CreateRefreshToken")
	next := newRefreshToken("rt2", "fam", "u1", "client-a", now)
	ok(t, s.RotateRefreshToken(ctx, rt.TokenHash, next, storage.AccessToken{}, now), "rotate")
	got, err := s.RefreshTokenInfo(ctx, rt.TokenHash)
	ok(t, err, "RefreshTokenInfo of a used token")
	if got.ID != "rt" || got.UsedAt.IsZero() || got.ClientID != "client-a" || got.UserID != "u1" {
		t.Fatalf("RefreshTokenInfo: %+v", got)
	}
	if !liveRefresh(s, "rt-secret-rt2", now) {
		t.Fatal("RefreshTokenInfo of a used token revoked its family")
	}
	_, err = s.RefreshTokenInfo(ctx, hash("unknown"))
	isErr(t, err, storage.ErrNotFound, "RefreshTokenInfo unknown")
}

// testAttemptBudget: the failure budget is not refilled by successes, leaks
// by time, hard-locks the factor when spent (even for the correct answer
// and after any wait) and is cleared only by Unlock (LockPolicy.Claim).
func testAttemptBudget(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	p := storage.LockPolicy{FreeFailures: 5, BaseLock: time.Minute, MaxLock: time.Hour, HardLimit: 20, Budget: 3, BudgetWindow: 3 * time.Hour}
	now := t0
	claim := func(what string, want bool) storage.AttemptClaim {
		t.Helper()
		c, err := s.ClaimAttempt(ctx, "u1", storage.FactorTOTP, now, p)
		ok(t, err, "ClaimAttempt %s", what)
		if c.Allowed != want {
			t.Fatalf("%s: allowed=%v, want %v (%+v)", what, c.Allowed, want, c)
		}
		return c
	}
	// Failure, owner success, failure, owner success, failure: the third
	// failure spends the budget although the consecutive count is 1. Each
	// owner success is claimed first and given back (only its own claim).
	owner := func() {
		t.Helper()
		claim("owner's attempt", true)
		ok(t, s.AttemptSucceeded(ctx, "u1", storage.FactorTOTP, storage.AttemptClaim{}, now, policy), "AttemptSucceeded")
	}
	claim("first", true)
	owner()
	claim("second", true)
	owner()
	if c := claim("third", true); !c.HardLocked || c.Failures != 1 {
		t.Fatalf("the claim that spends the budget: %+v, want HardLocked with 1 consecutive failure", c)
	}
	now = now.Add(1000 * time.Hour)
	if c := claim("after the budget was spent", false); !c.HardLocked {
		t.Fatalf("refusal: %+v", c)
	}
	st, err := s.AttemptStates(ctx, "u1")
	ok(t, err, "AttemptStates")
	if len(st) != 1 || !st[0].BudgetSpent || st[0].BudgetLevel < 2.9 {
		t.Fatalf("AttemptStates: %+v", st)
	}
	ok(t, s.Unlock(ctx, "u1"), "Unlock")
	// Leak: two failures, then two hours (one leaks per hour): two more
	// fit before the third fills the bucket again.
	claim("after unlock 1", true)
	claim("after unlock 2", true)
	now = now.Add(2 * time.Hour)
	claim("after the leak 1", true)
	claim("after the leak 2", true)
	if c := claim("after the leak 3", true); !c.HardLocked {
		t.Fatalf("the bucket should be full again: %+v", c)
	}
	claim("spent again", false)
	// Concurrent claims never exceed the budget.
	addUser(t, s, "u2")
	errs := together(20, func(int) error {
		c, err := s.ClaimAttempt(ctx, "u2", storage.FactorTOTP, now, p)
		if err == nil && !c.Allowed {
			return storage.ErrWrongState
		}
		return err
	})
	if got := tally(errs); got["nil"] != 3 {
		t.Fatalf("20 concurrent claims on a budget of 3: %v allowed", got)
	}
}

// testWithdrawSigningKey: a withdrawn key leaves the published set at once,
// also when a rotation had given it a later expiry, and never signs again.
func testWithdrawSigningKey(t *testing.T, s storage.Store) {
	ctx := context.Background()
	k1 := newKey("k1", t0)
	ok(t, s.AddSigningKey(ctx, k1, false, time.Time{}), "AddSigningKey")
	k2 := newKey("k2", t0.Add(time.Hour))
	ok(t, s.AddSigningKey(ctx, k2, true, t0.Add(48*time.Hour)), "AddSigningKey retiring")
	now := t0.Add(2 * time.Hour)
	ok(t, s.WithdrawSigningKey(ctx, "k1", now), "WithdrawSigningKey")
	ks, err := s.SigningKeys(ctx, now)
	ok(t, err, "SigningKeys")
	if !slices.Equal(keyIDs(ks), []string{"k2"}) {
		t.Fatalf("published after withdrawing k1: %v", keyIDs(ks))
	}
	if k, ok := storage.SigningKeyAt(ks, now); !ok || k.ID != "k2" {
		t.Fatalf("signing key after the withdrawal: %v %v", k.ID, ok)
	}
	isErr(t, s.WithdrawSigningKey(ctx, "nope", now), storage.ErrNotFound, "WithdrawSigningKey unknown")
}
