package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

// RunReplicas runs the multi-process part of the suite: the contract's
// atomic decisions must hold between stores that share one database, as
// between replicas of the provider (storage.Store: "safe for concurrent use
// by several goroutines and by several processes sharing the same
// database"). newPair must return two stores (separate pools, separate
// in-process queues) on one new, empty database, and arrange for both to be
// closed when t ends.
//
// Every race runs its goroutines on both stores alternately, released at
// once (together), and checks what the contract allows across both: never
// more allowed claims than the policy permits, exactly one winner of a
// single-use value, and no token left live by a revocation that raced a
// rotation.
func RunReplicas(t *testing.T, newPair func(t *testing.T) (storage.Store, storage.Store)) {
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store, storage.Store)
	}{
		{"SeeEachOther", testReplicasSeeEachOther},
		{"Outbox/Claims", testReplicaMailClaims},
		{"Attempts/Claim", testReplicaClaims},
		{"Attempts/HardLimit", testReplicaHardLimit},
		{"Attempts/Unknown", testReplicaUnknownClaims},
		{"Attempts/Device", testReplicaDeviceClaims},
		{"AuthCodes/Consume", testReplicaConsumeAuthCode},
		{"RefreshTokens/Rotate", testReplicaRotate},
		{"RefreshTokens/ReuseVersusRotate", testReplicaReuseVersusRotate},
		{"RefreshTokens/EndUserVersusRotate", testReplicaEndUserVersusRotate},
		{"AuthCodes/LogoutVersusCompletion", testReplicaLogoutVersusCompletion},
		{"Clients/DeleteVersusReuse", testReplicaDeleteClientVersusReuse},
		{"Accounts/ReverifyVersusSignIn", testReplicaReverifyVersusSignIn},
		{"CompleteTOTP/SameStep", testReplicaCompleteTOTP},
		{"RecoveryCodes/SameCode", testReplicaRecovery},
		{"SigningKeys/FirstKey", testReplicaFirstKey},
		{"SigningKeys/Rotate", testReplicaKeyRotation},
		{"Settings/IfAbsent", testReplicaSettings},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newPair(t)
			tc.fn(t, a, b)
		})
	}
}

// either is the store goroutine i runs on: the two alternately.
func either(i int, a, b storage.Store) storage.Store {
	if i%2 == 0 {
		return a
	}
	return b
}

// replicaRaceRounds is how often the narrow races (a revocation against a
// rotation) are repeated: each round's window is a few statements wide.
const replicaRaceRounds = 20

func testReplicasSeeEachOther(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	addUser(t, a, "u1")
	u, err := b.UserByID(ctx, "u1")
	ok(t, err, "the second store reads the first's user")
	if u.Username != "name-u1" {
		t.Fatalf("second store read %+v", u)
	}
	isErr(t, b.CreateUser(ctx, storage.User{ID: "u2", Username: "name-u1"}), storage.ErrConflict,
		"duplicate username across stores")
}

// testReplicaClaims: claims at one instant on both stores allow exactly the
// free failures, each with its own count; every other one is refused with
// the lock the last allowed one set.
func testReplicaClaims(t *testing.T, a, b storage.Store) {
	const n = 60
	for r := range rounds {
		user := fmt.Sprintf("u%d", r)
		addUser(t, a, user)
		claims := make([]storage.AttemptClaim, n)
		errs := together(n, func(i int) error {
			var err error
			claims[i], err = either(i, a, b).ClaimAttempt(context.Background(), user, storage.FactorPassword, t0, policy)
			return err
		})
		if m := tally(errs); m["nil"] != n {
			t.Fatalf("round %d: claims on two stores: %v", r, m)
		}
		var failures []int
		for _, c := range claims {
			if c.Allowed {
				failures = append(failures, c.Failures)
			} else if c.Failures != policy.FreeFailures || c.RetryAfter != policy.BaseLock {
				t.Fatalf("round %d: refused claim: %+v", r, c)
			}
		}
		slices.Sort(failures)
		if !slices.Equal(failures, []int{1, 2, 3, 4, 5}) {
			t.Fatalf("round %d: allowed claims across two stores had failure counts %v, want exactly 1..%d",
				r, failures, policy.FreeFailures)
		}
		st, err := b.AttemptStates(context.Background(), user)
		ok(t, err, "AttemptStates")
		if len(st) != 1 || st[0].Failures != policy.FreeFailures {
			t.Fatalf("round %d: stored counter %+v", r, st)
		}
	}
}

// testReplicaHardLimit: without locks on the way, claims on both stores
// stop at the hard limit: exactly HardLimit allowed, one of them at the
// limit, and the counter hard-locked.
func testReplicaHardLimit(t *testing.T, a, b storage.Store) {
	p := storage.LockPolicy{FreeFailures: 100, HardLimit: 7, MaxLock: time.Hour}
	const n = 40
	for r := range rounds {
		user := fmt.Sprintf("u%d", r)
		addUser(t, a, user)
		claims := make([]storage.AttemptClaim, n)
		errs := together(n, func(i int) error {
			var err error
			claims[i], err = either(i, a, b).ClaimAttempt(context.Background(), user, storage.FactorTOTP, t0, p)
			return err
		})
		if m := tally(errs); m["nil"] != n {
			t.Fatalf("round %d: claims on two stores: %v", r, m)
		}
		allowed, atLimit := 0, 0
		for _, c := range claims {
			if c.Allowed {
				allowed++
				if c.AtLimit {
					atLimit++
				}
			} else if !c.HardLocked {
				t.Fatalf("round %d: refused claim not hard-locked: %+v", r, c)
			}
		}
		if allowed != p.HardLimit || atLimit != 1 {
			t.Fatalf("round %d: %d allowed (%d at the limit) across two stores, want %d (1)", r, allowed, atLimit, p.HardLimit)
		}
	}
}

// testReplicaUnknownClaims: an unknown name's counter holds across stores
// like an account's.
func testReplicaUnknownClaims(t *testing.T, a, b storage.Store) {
	p := decayPolicy // 3 free failures, then a lock
	const n = 40
	for r := range rounds {
		key := fmt.Sprintf("name-%d", r)
		claims := make([]storage.AttemptClaim, n)
		errs := together(n, func(i int) error {
			var err error
			claims[i], err = either(i, a, b).ClaimUnknownAttempt(context.Background(), key, t0, p)
			return err
		})
		if m := tally(errs); m["nil"] != n {
			t.Fatalf("round %d: unknown-name claims on two stores: %v", r, m)
		}
		var failures []int
		for _, c := range claims {
			if c.Allowed {
				failures = append(failures, c.Failures)
			}
		}
		slices.Sort(failures)
		if !slices.Equal(failures, []int{1, 2, 3}) {
			t.Fatalf("round %d: allowed unknown-name claims had failure counts %v, want 1..3", r, failures)
		}
	}
}

// testReplicaDeviceClaims: a device's own counter holds across stores, and
// the claim reaching its limit forgets it exactly once.
func testReplicaDeviceClaims(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	addUser(t, a, "u1")
	p := storage.LockPolicy{FreeFailures: 10, HardLimit: 4, Decay: time.Hour}
	const n = 30
	for r := range rounds {
		id := fmt.Sprintf("d%d", r)
		ok(t, a.RememberDevice(ctx, device(id, "u1", t0), nil, 10, t0), "RememberDevice")
		claims := make([]storage.AttemptClaim, n)
		errs := together(n, func(i int) error {
			var err error
			claims[i], err = either(i, a, b).ClaimDeviceAttempt(ctx, hash(id), "u1", t0, p)
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
		if allowed != p.HardLimit || atLimit != 1 || got["nil"]+got["notfound"] != n {
			t.Fatalf("round %d: %d device claims on two stores: %d allowed, %d at the limit, errors %v; want %d, 1, only not-found",
				r, n, allowed, atLimit, got, p.HardLimit)
		}
		_, err := b.ClaimDeviceAttempt(ctx, hash(id), "u1", t0, p)
		isErr(t, err, storage.ErrNotFound, "device after its limit")
	}
}

func testReplicaConsumeAuthCode(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	addUser(t, a, "u1")
	const n = 8
	for r := range rounds {
		id, code := fmt.Sprintf("ar-%d", r), hash(fmt.Sprintf("code-%d", r))
		doneRequest(t, a, id, "u1", t0)
		ok(t, b.SaveAuthCode(ctx, id, code, t0, t0.Add(time.Minute)), "SaveAuthCode")
		got := make([]storage.AuthRequest, n)
		errs := together(n, func(i int) error {
			var err error
			got[i], err = either(i, a, b).ConsumeAuthCode(ctx, code, t0)
			return err
		})
		if m := tally(errs); m["nil"] != 1 || m["reused"] != n-1 {
			t.Fatalf("round %d: %d ConsumeAuthCode on two stores: %v, want 1 nil and %d ErrReused", r, n, m, n-1)
		}
		for i, err := range errs {
			if err == nil && got[i].ID != id {
				t.Fatalf("round %d: winner got request %q", r, got[i].ID)
			}
		}
	}
}

func testReplicaRotate(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	addUser(t, a, "u1")
	const n = 8
	for r := range rounds {
		fam := fmt.Sprintf("fam-%d", r)
		rt := newRefreshToken("rt-"+fam, fam, "u1", "client-a", t0)
		ok(t, a.CreateRefreshToken(ctx, rt, storage.AccessToken{}), "CreateRefreshToken")
		nexts := make([]storage.RefreshToken, n)
		for i := range n {
			nexts[i] = newRefreshToken(fmt.Sprintf("next-%d-%d", r, i), fam, "u1", "client-a", t0)
		}
		atID := func(i int) string { return fmt.Sprintf("at-%d-%d", r, i) }
		errs := together(n, func(i int) error {
			return either(i, a, b).RotateRefreshToken(ctx, rt.TokenHash, nexts[i], newAccessToken(atID(i), "u1", "client-a", t0), t0)
		})
		if m := tally(errs); m["nil"] != 1 || m["reused"] != n-1 {
			t.Fatalf("round %d: %d rotations on two stores: %v, want 1 nil and %d ErrReused", r, n, m, n-1)
		}
		// The losers' reuse revoked the winner's new token and access token.
		for i, err := range errs {
			if err == nil {
				refreshGone(t, a, nexts[i], t0)
				accessGone(t, b, atID(i), t0)
			} else if _, err := a.RefreshTokenByID(ctx, nexts[i].ID); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("round %d: losing rotation %d stored its token: %v", r, i, err)
			}
		}
	}
}

// testReplicaReuseVersusRotate: the replay of a used refresh token on one
// store races the rotation of the family's newest token on the other.
// Whichever comes first, the family ends revoked: a rotation that won
// leaves no live token behind the revocation.
func testReplicaReuseVersusRotate(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	addUser(t, a, "u1")
	for r := range replicaRaceRounds {
		fam := fmt.Sprintf("fam-%d", r)
		rt1 := newRefreshToken(fmt.Sprintf("rt1-%d", r), fam, "u1", "client-a", t0)
		ok(t, a.CreateRefreshToken(ctx, rt1, storage.AccessToken{}), "CreateRefreshToken")
		rt2 := newRefreshToken(fmt.Sprintf("rt2-%d", r), fam, "u1", "client-a", t0)
		ok(t, a.RotateRefreshToken(ctx, rt1.TokenHash, rt2, storage.AccessToken{}, t0), "RotateRefreshToken")
		rt3 := newRefreshToken(fmt.Sprintf("rt3-%d", r), fam, "u1", "client-a", t0)
		at3 := newAccessToken(fmt.Sprintf("at3-%d", r), "u1", "client-a", t0)
		errs := together(2, func(i int) error {
			if i == 0 {
				return a.RotateRefreshToken(ctx, rt2.TokenHash, rt3, at3, t0)
			}
			_, err := b.RefreshTokenByHash(ctx, rt1.TokenHash, t0)
			return err
		})
		if errs[0] != nil && !errors.Is(errs[0], storage.ErrNotFound) {
			t.Fatalf("round %d: rotation racing a reuse: %v, want nil or ErrNotFound", r, errs[0])
		}
		isErr(t, errs[1], storage.ErrReused, "round %d: the replayed token", r)
		refreshGone(t, a, rt2, t0)
		refreshGone(t, b, rt3, t0)
		accessGone(t, a, at3.ID, t0)
	}
}

// testReplicaEndUserVersusRotate: ending every sign-in of a user on one
// store races a rotation of the user's refresh token on the other; no
// token of the user is live afterwards.
func testReplicaEndUserVersusRotate(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	for r := range replicaRaceRounds {
		user := fmt.Sprintf("u%d", r)
		addUser(t, a, user)
		rt := newRefreshToken("rt-"+user, "fam-"+user, user, "client-a", t0)
		ok(t, a.CreateRefreshToken(ctx, rt, newAccessToken("at-"+user, user, "client-a", t0)), "CreateRefreshToken")
		next := newRefreshToken("next-"+user, "fam-"+user, user, "client-a", t0)
		at := newAccessToken("at-next-"+user, user, "client-a", t0)
		errs := together(2, func(i int) error {
			if i == 0 {
				return a.RotateRefreshToken(ctx, rt.TokenHash, next, at, t0)
			}
			_, err := b.EndUserSessions(ctx, user, "", t0)
			return err
		})
		if errs[0] != nil && !errors.Is(errs[0], storage.ErrNotFound) {
			t.Fatalf("round %d: rotation racing EndUserSessions: %v, want nil or ErrNotFound", r, errs[0])
		}
		ok(t, errs[1], "round %d: EndUserSessions", r)
		refreshGone(t, b, rt, t0)
		refreshGone(t, a, next, t0)
		accessGone(t, b, "at-"+user, t0)
		accessGone(t, a, at.ID, t0)
	}
}

// testReplicaLogoutVersusCompletion: a logout on one store races, on the
// other, a sign-in completed from that session, its code saved and
// redeemed and its tokens stored. Whatever the order, nothing outlives the
// logout: the chain stops with ErrNotFound, its tokens are refused
// (ErrReused), or they were stored first and the logout revoked them.
func testReplicaLogoutVersusCompletion(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	addUser(t, a, "u1")
	stopped := map[string]int{}
	for r := range replicaRaceRounds {
		sess := storage.Session{IDHash: hash(fmt.Sprintf("sess-%d", r)), UserID: "u1", AuthTime: t0,
			AMR: []string{"pwd", "otp", "mfa"}, ACR: "urn:mfa", CreatedAt: t0, LastSeenAt: t0, ExpiresAt: t0.Add(time.Hour)}
		ok(t, a.CreateSession(ctx, sess), "CreateSession")
		id, code := fmt.Sprintf("ar-%d", r), hash(fmt.Sprintf("code-%d", r))
		addAuthRequest(t, a, id, t0)
		step := ""
		errs := together(2, func(i int) error {
			if i == 1 {
				_, err := b.EndSession(ctx, sess.IDHash, t0)
				return err
			}
			step = "CompleteFromSession"
			if err := a.CompleteFromSession(ctx, id, sess, t0); err != nil {
				return err
			}
			step = "SaveAuthCode"
			if err := a.SaveAuthCode(ctx, id, code, t0, t0.Add(time.Minute)); err != nil {
				return err
			}
			step = "ConsumeAuthCode"
			if _, err := a.ConsumeAuthCode(ctx, code, t0); err != nil {
				return err
			}
			step = "CreateAccessToken"
			at := newAccessToken(fmt.Sprintf("at-%d", r), "u1", "client-a", t0)
			at.AuthRequestID, at.SessionHash = id, sess.IDHash
			return a.CreateAccessToken(ctx, at)
		})
		ok(t, errs[1], "round %d: EndSession", r)
		switch {
		case errs[0] == nil:
			// All before the logout: the logout revoked the token.
			accessGone(t, b, fmt.Sprintf("at-%d", r), t0)
			stopped["revoked by the logout"]++
		case step == "CreateAccessToken" && errors.Is(errs[0], storage.ErrReused),
			step != "CreateAccessToken" && errors.Is(errs[0], storage.ErrNotFound):
			stopped[step]++
		default:
			t.Fatalf("round %d: %s racing the logout: %v", r, step, errs[0])
		}
		_, err := b.ConsumeAuthCode(ctx, code, t0)
		if err == nil {
			t.Fatalf("round %d: the code works after the logout", r)
		}
	}
	t.Logf("where the chain stopped: %v", stopped)
}

// testReplicaDeleteClientVersusReuse: deleting a client on one store races
// the reuse of a code of that client on the other (which revokes the
// code's tokens) and a rotation of one of its refresh tokens. Neither may
// wait in a circle with the other (a deadlock costs a second and ErrBusy),
// and nothing of the client is left.
func testReplicaDeleteClientVersusReuse(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	addUser(t, a, "u1")
	for r := range replicaRaceRounds {
		client := fmt.Sprintf("client-%d", r)
		ok(t, a.CreateClient(ctx, storage.Client{ID: client, Name: client, RedirectURIs: []string{"https://rp.example/cb"}, CreatedAt: t0}),
			"CreateClient")
		id, code := fmt.Sprintf("ar-%d", r), hash(fmt.Sprintf("code-%d", r))
		req := newAuthRequest(id, t0)
		req.ClientID = client
		ok(t, a.CreateAuthRequest(ctx, req), "CreateAuthRequest")
		ok(t, a.CompleteFromSession(ctx, id, storage.Session{UserID: "u1", AuthTime: t0}, t0), "CompleteFromSession")
		ok(t, a.SaveAuthCode(ctx, id, code, t0, t0.Add(time.Minute)), "SaveAuthCode")
		_, err := a.ConsumeAuthCode(ctx, code, t0)
		ok(t, err, "ConsumeAuthCode")
		at := newAccessToken(fmt.Sprintf("at-%d", r), "u1", client, t0)
		at.AuthRequestID = id
		rt := newRefreshToken(fmt.Sprintf("rt-%d", r), fmt.Sprintf("fam-%d", r), "u1", client, t0)
		rt.AuthRequestID = id
		ok(t, a.CreateRefreshToken(ctx, rt, at), "CreateRefreshToken")
		next := newRefreshToken(fmt.Sprintf("next-%d", r), rt.FamilyID, "u1", client, t0)
		errs := together(3, func(i int) error {
			switch i {
			case 0:
				return b.DeleteClient(ctx, client)
			case 1:
				_, err := a.ConsumeAuthCode(ctx, code, t0)
				return err
			}
			return b.RotateRefreshToken(ctx, rt.TokenHash, next, newAccessToken(fmt.Sprintf("at-next-%d", r), "u1", client, t0), t0)
		})
		for i, err := range errs {
			if errors.Is(err, storage.ErrBusy) {
				t.Fatalf("round %d: racer %d waited out: %v", r, i, err)
			}
		}
		ok(t, errs[0], "round %d: DeleteClient", r)
		if !errors.Is(errs[1], storage.ErrReused) && !errors.Is(errs[1], storage.ErrNotFound) {
			t.Fatalf("round %d: the reuse racing DeleteClient: %v, want ErrReused or ErrNotFound", r, errs[1])
		}
		accessGone(t, b, at.ID, t0)
		accessGone(t, b, fmt.Sprintf("at-next-%d", r), t0)
		refreshGone(t, b, rt, t0)
		refreshGone(t, b, next, t0)
	}
}

// testReplicaReverifyVersusSignIn: one TOTP code used at once in a
// reauthentication on one store and in a sign-in on the other: exactly one
// of them is accepted (the step is single-use everywhere).
func testReplicaReverifyVersusSignIn(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	addUser(t, a, "u1")
	ok(t, a.PutTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte("sealed"), Confirmed: true, CreatedAt: t0}), "PutTOTP")
	sess := storage.Session{IDHash: hash("s"), UserID: "u1", AuthTime: t0, CreatedAt: t0, LastSeenAt: t0, ExpiresAt: t0.Add(time.Hour)}
	ok(t, a.CreateSession(ctx, sess), "CreateSession")
	for r := range replicaRaceRounds {
		id, step := fmt.Sprintf("ar-%d", r), int64(1000+r)
		addAuthRequest(t, a, id, t0)
		ok(t, a.PasswordVerified(ctx, id, "u1", t0), "PasswordVerified")
		errs := together(2, func(i int) error {
			if i == 0 {
				return a.ReverifyTOTP(ctx, sess.IDHash, "u1", step, t0)
			}
			return b.CompleteTOTP(ctx, id, "u1", step, t0, []string{"pwd", "otp"}, "urn:mfa")
		})
		if m := tally(errs); m["nil"] != 1 || m["replay"] != 1 {
			t.Fatalf("round %d: one step in a reauthentication and a sign-in on two stores: %v, want 1 nil and 1 ErrReplay", r, m)
		}
	}
}

func testReplicaCompleteTOTP(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	const n = 10
	for r := range rounds {
		user := fmt.Sprintf("u%d", r)
		addUser(t, a, user)
		ok(t, b.PutTOTP(ctx, storage.TOTPCredential{UserID: user, Secret: []byte("k"), Confirmed: true, LastStep: 10}), "PutTOTP")
		id := func(i int) string { return fmt.Sprintf("ar-%d-%d", r, i) }
		for i := range n {
			passwordOK(t, either(i, a, b), id(i), user, t0)
		}
		errs := together(n, func(i int) error {
			return either(i, a, b).CompleteTOTP(ctx, id(i), user, 11, t0, []string{"pwd", "otp"}, "urn:mfa")
		})
		if m := tally(errs); m["nil"] != 1 || m["replay"] != n-1 {
			t.Fatalf("round %d: %d CompleteTOTP with one step on two stores: %v, want 1 nil and %d ErrReplay", r, n, m, n-1)
		}
		for i := range n {
			req, err := either(i+1, a, b).AuthRequestByID(ctx, id(i), t0)
			ok(t, err, "AuthRequestByID")
			if req.Done() != (errs[i] == nil) {
				t.Fatalf("round %d, request %d: Done()=%v but CompleteTOTP returned %v", r, i, req.Done(), errs[i])
			}
		}
		if c, _ := a.TOTPByUser(ctx, user); c.LastStep != 11 {
			t.Fatalf("round %d: last step %d, want 11", r, c.LastStep)
		}
	}
}

func testReplicaRecovery(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	u := addUser(t, a, "rc")
	ok(t, a.PutTOTP(ctx, storage.TOTPCredential{UserID: u.ID, Secret: []byte("s"), Confirmed: true, CreatedAt: t0}), "PutTOTP")
	const n = 10
	for r := range rounds {
		code := fmt.Sprintf("race-%d", r)
		ok(t, second(b.ReplaceRecoveryCodes(ctx, u.ID, [][]byte{hash(code), hash(code + "-other")}, t0)), "ReplaceRecoveryCodes")
		id := func(i int) string { return fmt.Sprintf("rc-%d-%d", r, i) }
		for i := range n {
			passwordOK(t, a, id(i), u.ID, t0)
		}
		left := make([]int, n)
		errs := together(n, func(i int) error {
			var err error
			left[i], err = either(i, a, b).CompleteRecovery(ctx, id(i), u.ID, hash(code), t0, []string{"pwd", "mfa"}, "acr")
			return err
		})
		if m := tally(errs); m["nil"] != 1 || m["notfound"] != n-1 {
			t.Fatalf("round %d: %d uses of one recovery code on two stores: %v, want 1 nil and %d ErrNotFound", r, n, m, n-1)
		}
		for i, err := range errs {
			if err == nil && left[i] != 1 {
				t.Fatalf("round %d: %d codes left after the winning use, want 1", r, left[i])
			}
		}
		if n, err := a.RecoveryCodesLeft(ctx, u.ID); err != nil || n != 1 {
			t.Fatalf("round %d: codes left %d, %v; want 1", r, n, err)
		}
	}
}

func testReplicaFirstKey(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	const n = 8
	errs := together(n, func(i int) error {
		return either(i, a, b).AddSigningKey(ctx, newKey(fmt.Sprintf("k%d", i), t0), false, time.Time{})
	})
	if m := tally(errs); m["nil"] != 1 || m["conflict"] != n-1 {
		t.Fatalf("%d replicas creating the first key: %v, want 1 nil and %d ErrConflict", n, m, n-1)
	}
	ks, err := b.SigningKeys(ctx, t0)
	ok(t, err, "SigningKeys")
	if len(ks) != 1 {
		t.Fatalf("SigningKeys: %v", keyIDs(ks))
	}
}

// testReplicaKeyRotation: rotations on both stores at once all succeed, one
// after the other: each retires the key the one before it added, and one
// key is left unretired.
func testReplicaKeyRotation(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	ok(t, a.AddSigningKey(ctx, newKey("k0", t0), false, time.Time{}), "AddSigningKey")
	const n = 6
	errs := together(n, func(i int) error {
		return either(i, a, b).AddSigningKey(ctx, newKey(fmt.Sprintf("k%d", i+1), t0.Add(time.Minute)), true, t0.Add(time.Hour))
	})
	if m := tally(errs); m["nil"] != n {
		t.Fatalf("%d concurrent rotations on two stores: %v, want all nil", n, m)
	}
	ks, err := b.SigningKeys(ctx, t0.Add(time.Minute))
	ok(t, err, "SigningKeys")
	unretired := 0
	for _, k := range ks {
		if k.RetiredAt.IsZero() {
			unretired++
		}
	}
	if len(ks) != n+1 || unretired != 1 {
		t.Fatalf("after %d rotations: %d keys listed, %d not retired; want %d and 1", n, len(ks), unretired, n+1)
	}
}

func testReplicaSettings(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	const n = 8
	vals := make([][]byte, n)
	errs := together(n, func(i int) error {
		var err error
		vals[i], err = either(i, a, b).PutSettingIfAbsent(ctx, "race", []byte(fmt.Sprintf("v%d", i)))
		return err
	})
	if m := tally(errs); m["nil"] != n {
		t.Fatalf("PutSettingIfAbsent on two stores: %v", m)
	}
	for i := range n {
		if string(vals[i]) != string(vals[0]) {
			t.Fatalf("PutSettingIfAbsent on two stores returned different values: %q", vals)
		}
	}
}
