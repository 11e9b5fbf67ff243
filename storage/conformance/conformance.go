// Package conformance is the backend-independent test suite of
// storage.Store. Every backend runs it unchanged:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(t *testing.T) storage.Store { ... })
//	}
//
// The suite uses only the storage package. It injects every "now", so it
// never sleeps and never depends on the wall clock, and it checks the
// security-relevant atomicity (attempt claims, TOTP replay, code and refresh
// token reuse) with concurrent goroutines.
package conformance

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

// Run runs the suite. newStore must return a new, empty store for each call
// and arrange for it to be closed when t ends (t.Cleanup); Close must
// therefore tolerate being called twice.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store)
	}{
		{"Users", testUsers},
		{"TimeEncoding", testTimeEncoding},
		{"TOTP", testTOTP},
		{"DeleteUserCascades", testDeleteUserCascades},
		{"Attempts/Escalation", testAttemptEscalation},
		{"Attempts/NoHardLimit", testAttemptNoHardLimit},
		{"Attempts/Succeeded", testAttemptSucceeded},
		{"Attempts/Independent", testAttemptIndependent},
		{"Attempts/Concurrent", testAttemptConcurrent},
		{"Attempts/Unknown", testUnknownAttempts},
		{"Attempts/Budget", testAttemptBudget},
		{"Attempts/Decay", testAttemptDecay},
		{"Attempts/RefundRace", testAttemptRefundRace},
		{"Attempts/UserNameKey", testUserNameKey},
		{"Devices", testDevices},
		{"Devices/Concurrent", testDevicesConcurrent},
		{"Clients", testClients},
		{"AuthRequests/RoundTrip", testAuthRequestRoundTrip},
		{"AuthRequests/StateMachine", testAuthRequestStateMachine},
		{"CompleteTOTP/Sequential", testCompleteTOTP},
		{"CompleteTOTP/Concurrent", testCompleteTOTPConcurrent},
		{"AuthCodes/Basic", testAuthCodes},
		{"AuthCodes/Reuse", testAuthCodeReuse},
		{"AuthCodes/Concurrent", testAuthCodeConcurrent},
		{"AuthCodes/TokensAfterRevocation", testTokensAfterRevocation},
		{"AuthCodes/AfterCancel", testCodeAfterCancel},
		{"Sessions/TokensFollowReplace", testTokensFollowReplace},
		{"Accounts/SetPassword", testSetPassword},
		{"Accounts/SetDisabled", testSetDisabled},
		{"Accounts/UpdateUser", testUpdateUser},
		{"Accounts/Sessions", testListSessions},
		{"Accounts/Reverify", testReverify},
		{"Accounts/RenewRecoveryCodes", testRenewRecoveryCodes},
		{"Accounts/ReplaceTOTP", testReplaceTOTP},
		{"Accounts/SignOutSession", testSignOutSession},
		{"Accounts/DeviceOfAnEndedSession", testDeviceOfAnEndedSession},
		{"Accounts/ReauthFailures", testReauthFailures},
		{"Outbox/Queue", testMailQueue},
		{"Outbox/WithEvent", testMailWithEvent},
		{"Outbox/Delivery", testMailDelivery},
		{"Outbox/ClaimConcurrent", testMailClaimConcurrent},
		{"Outbox/OncePer", testMailOncePer},
		{"Outbox/GC", testMailGC},
		{"Links/Issue", testLinkIssue},
		{"Links/IssueConcurrent", testLinkIssueConcurrent},
		{"Links/VerifyEmail", testVerifyEmail},
		{"Links/ResetPassword", testResetPassword},
		{"Links/ResetConcurrent", testResetConcurrent},
		{"Links/GC", testLinkGC},
		{"Links/Tries", testLinkTries},
		{"Lookups/NoSideEffects", testSideEffectFreeLookups},
		{"AccessTokens", testAccessTokens},
		{"RefreshTokens/Basic", testRefreshTokens},
		{"RefreshTokens/ReuseByHash", testRefreshReuseByHash},
		{"RefreshTokens/ReuseByRotate", testRefreshReuseByRotate},
		{"RefreshTokens/ConcurrentRotate", testRefreshConcurrentRotate},
		{"RefreshTokens/RevokeFamily", testRevokeFamily},
		{"Sessions/EndUserAtClient", testEndUserAtClient},
		{"Sessions", testSessions},
		{"Sessions/Links", testSessionLinks},
		{"Sessions/EndUser", testEndUserSessions},
		{"Sessions/Replace", testReplaceSession},
		{"SigningKeys/Basic", testSigningKeys},
		{"SigningKeys/Concurrent", testSigningKeysConcurrent},
		{"SigningKeys/Withdraw", testWithdrawSigningKey},
		{"SigningKeys/Next", testSigningKeysNext},
		{"Settings", testSettings},
		{"Audit", testAudit},
		{"Audit/Retention", testAuditRetention},
		{"GC", testGC},
		{"Enrollment", testEnrollment},
		{"EnrollPending", testEnrollPending},
		{"AuthRequests/Rebind", testRebind},
		{"RecoveryCodes", testRecoveryCodes},
		{"ReencryptSecrets", testReencryptSecrets},
		{"PingClose", testPingClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// t0 is the suite's clock origin, a whole second far from the epoch.
var t0 = time.Unix(1_900_000_000, 0).UTC()

// policy is the shape of the default TOTP lock policy (op.DefaultTOTPPolicy).
var policy = storage.LockPolicy{FreeFailures: 5, BaseLock: 15 * time.Minute, MaxLock: 4 * time.Hour, HardLimit: 20}

// ---------------------------------------------------------------------------
// Helpers

func ok(t *testing.T, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: unexpected error: %v", fmt.Sprintf(what, args...), err)
	}
}

func isErr(t *testing.T, err, want error, what string, args ...any) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", fmt.Sprintf(what, args...), err, want)
	}
}

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// norm makes values comparable across backends: empty slices become nil
// and non-zero times whole UTC seconds (the interface's resolution).
func norm[T any](v T) T {
	normValue(reflect.ValueOf(&v).Elem())
	return v
}

var timeType = reflect.TypeOf(time.Time{})

func normValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == timeType {
			if tm := v.Interface().(time.Time); !tm.IsZero() {
				v.Set(reflect.ValueOf(time.Unix(tm.Unix(), 0).UTC()))
			}
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Field(i).CanSet() {
				normValue(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
		} else if v.Type().Elem().Kind() == reflect.Struct {
			for i := 0; i < v.Len(); i++ {
				normValue(v.Index(i))
			}
		}
	}
}

// same fails the test unless got equals want after norm.
func same[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

// together runs fn(0..n-1) in n goroutines released at the same moment and
// returns their errors.
func together(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// tally counts errors: nil under "nil", sentinels by name, others "other".
func tally(errs []error) map[string]int {
	m := map[string]int{}
	for _, err := range errs {
		switch {
		case err == nil:
			m["nil"]++
		case errors.Is(err, storage.ErrReused):
			m["reused"]++
		case errors.Is(err, storage.ErrReplay):
			m["replay"]++
		case errors.Is(err, storage.ErrConflict):
			m["conflict"]++
		case errors.Is(err, storage.ErrNotFound):
			m["notfound"]++
		case errors.Is(err, storage.ErrWrongState):
			m["wrongstate"]++
		default:
			m["other: "+err.Error()]++
		}
	}
	return m
}

func addUser(t *testing.T, s storage.Store, id string) storage.User {
	t.Helper()
	u := storage.User{ID: id, Username: "name-" + id, Name: "Name " + id, Email: id + "@example.com",
		EmailVerified: true, PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", CreatedAt: t0}
	ok(t, s.CreateUser(context.Background(), u), "CreateUser %s", id)
	return u
}

func newAuthRequest(id string, now time.Time) storage.AuthRequest {
	return storage.AuthRequest{
		ID: id, ClientID: "client-a", RedirectURI: "https://rp.example/cb", Scopes: []string{"openid", "profile"},
		State: "state-" + id, Nonce: "nonce-" + id, ResponseType: "code", CodeChallenge: "challenge",
		CodeChallengeMethod: "S256", Stage: storage.StageCreated, CreatedAt: now, ExpiresAt: now.Add(30 * time.Minute),
	}
}

func addAuthRequest(t *testing.T, s storage.Store, id string, now time.Time) storage.AuthRequest {
	t.Helper()
	a := newAuthRequest(id, now)
	ok(t, s.CreateAuthRequest(context.Background(), a), "CreateAuthRequest %s", id)
	return a
}

// doneRequest creates an auth request and completes it from a session of
// userID, the shortest path to stage done.
func doneRequest(t *testing.T, s storage.Store, id, userID string, now time.Time) storage.AuthRequest {
	t.Helper()
	ctx := context.Background()
	addAuthRequest(t, s, id, now)
	ok(t, s.CompleteFromSession(ctx, id, storage.Session{UserID: userID, AuthTime: now,
		AMR: []string{"pwd", "otp", "mfa"}, ACR: "urn:totp-idp:mfa"}, now), "CompleteFromSession %s", id)
	a, err := s.AuthRequestByID(ctx, id, now)
	ok(t, err, "AuthRequestByID %s", id)
	return a
}

func newAccessToken(id, userID, clientID string, now time.Time) storage.AccessToken {
	return storage.AccessToken{ID: id, ClientID: clientID, UserID: userID, Scopes: []string{"openid", "email"},
		Audience: []string{clientID}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
}

func newRefreshToken(id, family, userID, clientID string, now time.Time) storage.RefreshToken {
	return storage.RefreshToken{ID: id, TokenHash: hash("rt-secret-" + id), FamilyID: family, ClientID: clientID,
		UserID: userID, Scopes: []string{"openid", "offline_access"}, Audience: []string{clientID},
		AMR: []string{"pwd", "otp"}, ACR: "urn:totp-idp:mfa", AuthTime: now.Add(-time.Minute), CreatedAt: now,
		ExpiresAt: now.Add(24 * time.Hour)}
}

// accessGone fails unless the access token is no longer usable.
func accessGone(t *testing.T, s storage.Store, id string, now time.Time) {
	t.Helper()
	_, err := s.AccessTokenByID(context.Background(), id, now)
	isErr(t, err, storage.ErrNotFound, "AccessTokenByID(%s) after revocation", id)
}

// accessLive fails unless the access token is usable.
func accessLive(t *testing.T, s storage.Store, id string, now time.Time) {
	t.Helper()
	_, err := s.AccessTokenByID(context.Background(), id, now)
	ok(t, err, "AccessTokenByID(%s) should be live", id)
}

// refreshGone fails unless the refresh token (by its secret's hash) is no
// longer usable: ErrNotFound or ErrReused.
func refreshGone(t *testing.T, s storage.Store, rt storage.RefreshToken, now time.Time) {
	t.Helper()
	_, err := s.RefreshTokenByHash(context.Background(), rt.TokenHash, now)
	if !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrReused) {
		t.Fatalf("RefreshTokenByHash(%s) after revocation: got %v, want ErrNotFound or ErrReused", rt.ID, err)
	}
	got, err := s.RefreshTokenByID(context.Background(), rt.ID)
	if err == nil && got.RevokedAt.IsZero() && got.UsedAt.IsZero() && got.ExpiresAt.After(now) {
		t.Fatalf("RefreshTokenByID(%s): token still live after revocation: %+v", rt.ID, got)
	}
}

func refreshLive(t *testing.T, s storage.Store, rt storage.RefreshToken, now time.Time) {
	t.Helper()
	_, err := s.RefreshTokenByHash(context.Background(), rt.TokenHash, now)
	ok(t, err, "RefreshTokenByHash(%s) should be live", rt.ID)
}

// ---------------------------------------------------------------------------
// Users and TOTP

func testUsers(t *testing.T, s storage.Store) {
	ctx := context.Background()
	_, err := s.UserByID(ctx, "nobody")
	isErr(t, err, storage.ErrNotFound, "UserByID unknown")
	_, err = s.UserByUsername(ctx, "nobody")
	isErr(t, err, storage.ErrNotFound, "UserByUsername unknown")
	if us, err := s.ListUsers(ctx); err != nil || len(us) != 0 {
		t.Fatalf("ListUsers on empty store: %v, %v", us, err)
	}

	alice := addUser(t, s, "u-alice")
	bob := storage.User{ID: "u-bob", Username: "bob", CreatedAt: t0.Add(time.Second)} // empty optional fields
	ok(t, s.CreateUser(ctx, bob), "CreateUser bob")

	got, err := s.UserByID(ctx, alice.ID)
	ok(t, err, "UserByID")
	same(t, "UserByID", got, alice)
	got, err = s.UserByUsername(ctx, alice.Username)
	ok(t, err, "UserByUsername")
	same(t, "UserByUsername", got, alice)
	got, err = s.UserByUsername(ctx, "bob")
	ok(t, err, "UserByUsername bob")
	same(t, "UserByUsername bob", got, bob)

	err = s.CreateUser(ctx, storage.User{ID: "u-other", Username: alice.Username, PasswordHash: "x"})
	isErr(t, err, storage.ErrConflict, "CreateUser duplicate username")
	err = s.CreateUser(ctx, storage.User{ID: alice.ID, Username: "fresh-name", PasswordHash: "x"})
	isErr(t, err, storage.ErrConflict, "CreateUser duplicate id")
	if _, err := s.UserByUsername(ctx, "fresh-name"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a conflicting CreateUser stored a row: %v", err)
	}

	us, err := s.ListUsers(ctx)
	ok(t, err, "ListUsers")
	if len(us) != 2 {
		t.Fatalf("ListUsers: got %d users, want 2: %+v", len(us), us)
	}
	ids := []string{us[0].ID, us[1].ID}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"u-alice", "u-bob"}) {
		t.Fatalf("ListUsers ids = %v", ids)
	}

	ok(t, s.SetPasswordHash(ctx, alice.ID, "new-hash"), "SetPasswordHash")
	got, _ = s.UserByID(ctx, alice.ID)
	if got.PasswordHash != "new-hash" {
		t.Fatalf("SetPasswordHash: hash = %q", got.PasswordHash)
	}
	if got, _ := s.UserByID(ctx, bob.ID); got.PasswordHash != "" {
		t.Fatalf("SetPasswordHash changed another user: %q", got.PasswordHash)
	}
	isErr(t, s.SetPasswordHash(ctx, "nobody", "h"), storage.ErrNotFound, "SetPasswordHash unknown")

	ok(t, s.DeleteUser(ctx, bob.ID), "DeleteUser")
	_, err = s.UserByID(ctx, bob.ID)
	isErr(t, err, storage.ErrNotFound, "UserByID after delete")
	isErr(t, s.DeleteUser(ctx, bob.ID), storage.ErrNotFound, "DeleteUser twice")
	if _, err := s.UserByID(ctx, alice.ID); err != nil {
		t.Fatalf("DeleteUser removed another user: %v", err)
	}
}

func testTimeEncoding(t *testing.T, s storage.Store) {
	ctx := context.Background()
	// Sub-second part and a non-UTC zone: stored as unix seconds, returned
	// as UTC.
	zone := time.FixedZone("UTC+5", 5*3600)
	in := t0.Add(700 * time.Millisecond).In(zone)
	ok(t, s.CreateUser(ctx, storage.User{ID: "u1", Username: "u1", CreatedAt: in}), "CreateUser")
	ok(t, s.CreateUser(ctx, storage.User{ID: "u2", Username: "u2"}), "CreateUser zero time")
	u1, err := s.UserByID(ctx, "u1")
	ok(t, err, "UserByID")
	if !u1.CreatedAt.Equal(t0) || u1.CreatedAt.Location() != time.UTC {
		t.Fatalf("CreatedAt = %v (%v), want %v UTC", u1.CreatedAt, u1.CreatedAt.Location(), t0)
	}
	u2, err := s.UserByID(ctx, "u2")
	ok(t, err, "UserByID")
	if !u2.CreatedAt.IsZero() {
		t.Fatalf("zero CreatedAt came back as %v", u2.CreatedAt)
	}
}

func testTOTP(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	_, err := s.TOTPByUser(ctx, "u1")
	isErr(t, err, storage.ErrNotFound, "TOTPByUser before PutTOTP")
	isErr(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: "nobody", Secret: []byte("x")}), storage.ErrNotFound,
		"PutTOTP for unknown user")

	c := storage.TOTPCredential{UserID: "u1", Secret: []byte{0, 1, 2, 250, 251}, Confirmed: false, LastStep: 42, CreatedAt: t0}
	ok(t, s.PutTOTP(ctx, c), "PutTOTP")
	got, err := s.TOTPByUser(ctx, "u1")
	ok(t, err, "TOTPByUser")
	same(t, "TOTPByUser", got, c)

	// Re-enrollment replaces the credential.
	c2 := storage.TOTPCredential{UserID: "u1", Secret: []byte("new secret"), Confirmed: true, LastStep: 0, CreatedAt: t0.Add(time.Hour)}
	ok(t, s.PutTOTP(ctx, c2), "PutTOTP replace")
	got, err = s.TOTPByUser(ctx, "u1")
	ok(t, err, "TOTPByUser")
	same(t, "TOTPByUser after replace", got, c2)
}

func testDeleteUserCascades(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	for _, id := range []string{"victim", "keeper"} {
		addUser(t, s, id)
		ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: id, Secret: []byte("k"), Confirmed: true}), "PutTOTP")
		_, err := s.ClaimAttempt(ctx, id, storage.FactorPassword, now, policy)
		ok(t, err, "ClaimAttempt")
		ok(t, s.CreateSession(ctx, storage.Session{IDHash: hash("sess-" + id), UserID: id, AuthTime: now,
			CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}), "CreateSession")
		addAuthRequest(t, s, "ar-"+id, now)
		ok(t, s.PasswordVerified(ctx, "ar-"+id, id, now), "PasswordVerified")
		ok(t, s.CreateAccessToken(ctx, newAccessToken("at-"+id, id, "client-a", now)), "CreateAccessToken")
		ok(t, s.CreateRefreshToken(ctx, newRefreshToken("rt-"+id, "fam-"+id, id, "client-a", now),
			newAccessToken("at2-"+id, id, "client-a", now)), "CreateRefreshToken")
		ok(t, s.AppendAudit(ctx, storage.AuditEvent{Time: now, Type: "login", UserID: id}), "AppendAudit")
	}

	ok(t, s.DeleteUser(ctx, "victim"), "DeleteUser")

	for _, tc := range []struct {
		id   string
		gone bool
	}{{"victim", true}, {"keeper", false}} {
		check := func(what string, err error) {
			t.Helper()
			if tc.gone && !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("%s of deleted user: got %v, want ErrNotFound", what, err)
			}
			if !tc.gone && err != nil {
				t.Fatalf("%s of other user after DeleteUser: %v", what, err)
			}
		}
		_, err := s.UserByID(ctx, tc.id)
		check("UserByID", err)
		_, err = s.TOTPByUser(ctx, tc.id)
		check("TOTPByUser", err)
		_, err = s.SessionByHash(ctx, hash("sess-"+tc.id), now)
		check("SessionByHash", err)
		_, err = s.AuthRequestByID(ctx, "ar-"+tc.id, now)
		check("AuthRequestByID", err)
		_, err = s.AccessTokenByID(ctx, "at-"+tc.id, now)
		check("AccessTokenByID", err)
		_, err = s.AccessTokenByID(ctx, "at2-"+tc.id, now)
		check("AccessTokenByID (with refresh)", err)
		_, err = s.RefreshTokenByID(ctx, "rt-"+tc.id)
		check("RefreshTokenByID", err)
		_, err = s.RefreshTokenByHash(ctx, hash("rt-secret-rt-"+tc.id), now)
		check("RefreshTokenByHash", err)
		states, err := s.AttemptStates(ctx, tc.id)
		ok(t, err, "AttemptStates")
		if tc.gone != (len(states) == 0) {
			t.Fatalf("AttemptStates(%s) after DeleteUser(victim): %+v", tc.id, states)
		}
	}
	// The audit trail outlives the user.
	ev, err := s.ListAudit(ctx, storage.AuditFilter{UserID: "victim"})
	ok(t, err, "ListAudit")
	if len(ev) != 1 {
		t.Fatalf("DeleteUser removed audit events: %+v", ev)
	}
}

// ---------------------------------------------------------------------------
// Attempt guard

func claim(t *testing.T, s storage.Store, user string, f storage.Factor, now time.Time, p storage.LockPolicy) storage.AttemptClaim {
	t.Helper()
	c, err := s.ClaimAttempt(context.Background(), user, f, now, p)
	ok(t, err, "ClaimAttempt(%s, %s, %v)", user, f, now)
	return c
}

func wantClaim(t *testing.T, what string, got, want storage.AttemptClaim) {
	t.Helper()
	got.Seq = 0 // the counter's own numbering
	if got != want {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

func testAttemptEscalation(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	_, err := s.ClaimAttempt(ctx, "nobody", storage.FactorPassword, t0, policy)
	isErr(t, err, storage.ErrNotFound, "ClaimAttempt for unknown user")

	states, err := s.AttemptStates(ctx, "u1")
	ok(t, err, "AttemptStates")
	if len(states) != 0 {
		t.Fatalf("AttemptStates before any claim: %+v", states)
	}

	pw := storage.FactorPassword
	now := t0
	for i := 1; i <= 4; i++ {
		wantClaim(t, fmt.Sprintf("claim %d", i), claim(t, s, "u1", pw, now, policy),
			storage.AttemptClaim{Allowed: true, Failures: i})
	}
	// The claim reaching FreeFailures is allowed and sets the first lock.
	wantClaim(t, "claim 5", claim(t, s, "u1", pw, now, policy),
		storage.AttemptClaim{Allowed: true, Failures: 5, RetryAfter: 15 * time.Minute})
	// Refused claims do not count.
	for i := 0; i < 3; i++ {
		wantClaim(t, "claim 6 while locked", claim(t, s, "u1", pw, now, policy),
			storage.AttemptClaim{Allowed: false, Failures: 5, RetryAfter: 15 * time.Minute})
	}
	wantClaim(t, "claim 6 one second before the lock ends", claim(t, s, "u1", pw, now.Add(15*time.Minute-time.Second), policy),
		storage.AttemptClaim{Allowed: false, Failures: 5, RetryAfter: time.Second})

	states, err = s.AttemptStates(ctx, "u1")
	ok(t, err, "AttemptStates")
	same(t, "AttemptStates while locked", states, []storage.AttemptState{{UserID: "u1", Factor: pw, Failures: 5,
		LockedUntil: now.Add(15 * time.Minute), LastFailureAt: now}})

	// Each later claim doubles the lock, capped at MaxLock.
	now = now.Add(15 * time.Minute)
	lock := 30 * time.Minute
	for i := 6; i < policy.HardLimit; i++ {
		wantClaim(t, fmt.Sprintf("claim %d", i), claim(t, s, "u1", pw, now, policy),
			storage.AttemptClaim{Allowed: true, Failures: i, RetryAfter: lock})
		wantClaim(t, fmt.Sprintf("claim %d+1 during its lock", i), claim(t, s, "u1", pw, now.Add(lock-time.Second), policy),
			storage.AttemptClaim{Allowed: false, Failures: i, RetryAfter: time.Second})
		now = now.Add(lock)
		lock = min(2*lock, policy.MaxLock)
	}
	if lock != policy.MaxLock {
		t.Fatalf("test setup: the cap was never reached")
	}

	// The claim reaching HardLimit is allowed and sets the hard lock.
	c := claim(t, s, "u1", pw, now, policy)
	if !c.Allowed || !c.HardLocked || c.Failures != policy.HardLimit {
		t.Fatalf("claim %d: got %+v, want allowed, hard-locked, %d failures", policy.HardLimit, c, policy.HardLimit)
	}
	for _, later := range []time.Duration{0, 5 * time.Hour, 365 * 24 * time.Hour} {
		c := claim(t, s, "u1", pw, now.Add(later), policy)
		if c.Allowed || !c.HardLocked || c.Failures != policy.HardLimit || c.RetryAfter <= 0 {
			t.Fatalf("claim %v after the hard lock: got %+v, want refused, hard-locked, %d failures, RetryAfter > 0",
				later, c, policy.HardLimit)
		}
	}
	states, err = s.AttemptStates(ctx, "u1")
	ok(t, err, "AttemptStates")
	if len(states) != 1 || !states[0].HardLocked || states[0].Failures != policy.HardLimit {
		t.Fatalf("AttemptStates after hard lock: %+v", states)
	}

	ok(t, s.Unlock(ctx, "u1"), "Unlock")
	states, err = s.AttemptStates(ctx, "u1")
	ok(t, err, "AttemptStates")
	if len(states) != 1 || states[0].HardLocked || states[0].Failures != 0 || !states[0].LockedUntil.IsZero() {
		t.Fatalf("AttemptStates after Unlock: %+v", states)
	}
	wantClaim(t, "claim after Unlock", claim(t, s, "u1", pw, now, policy),
		storage.AttemptClaim{Allowed: true, Failures: 1})
}

func testAttemptNoHardLimit(t *testing.T, s storage.Store) {
	addUser(t, s, "u1")
	p := storage.LockPolicy{FreeFailures: 2, BaseLock: time.Minute, MaxLock: 3 * time.Minute, HardLimit: 0}
	now := t0
	var last storage.AttemptClaim
	for i := 1; i <= 40; i++ {
		last = claim(t, s, "u1", storage.FactorTOTP, now, p)
		if !last.Allowed || last.HardLocked || last.Failures != i || last.RetryAfter > p.MaxLock {
			t.Fatalf("claim %d with HardLimit 0: %+v", i, last)
		}
		now = now.Add(last.RetryAfter)
	}
	if last.RetryAfter != p.MaxLock {
		t.Fatalf("lock not capped at MaxLock: %v", last.RetryAfter)
	}
}

func testAttemptSucceeded(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	pw := storage.FactorPassword
	for i := 1; i <= 3; i++ {
		claim(t, s, "u1", pw, t0, policy)
	}
	ok(t, s.AttemptSucceeded(ctx, "u1", pw, storage.AttemptClaim{}, t0.Add(time.Second), policy), "AttemptSucceeded")
	states, err := s.AttemptStates(ctx, "u1")
	ok(t, err, "AttemptStates")
	same(t, "AttemptStates after success", states, []storage.AttemptState{{UserID: "u1", Factor: pw,
		LastFailureAt: t0, LastSuccessAt: t0.Add(time.Second)}})
	wantClaim(t, "claim after success", claim(t, s, "u1", pw, t0.Add(2*time.Second), policy),
		storage.AttemptClaim{Allowed: true, Failures: 1})

	// A success (of an attempt claimed before the lock) lifts the lock.
	for i := 2; i <= policy.FreeFailures; i++ {
		claim(t, s, "u1", pw, t0.Add(2*time.Second), policy)
	}
	if c := claim(t, s, "u1", pw, t0.Add(3*time.Second), policy); c.Allowed {
		t.Fatalf("not locked after %d failures: %+v", policy.FreeFailures, c)
	}
	ok(t, s.AttemptSucceeded(ctx, "u1", pw, storage.AttemptClaim{}, t0.Add(3*time.Second), policy), "AttemptSucceeded")
	wantClaim(t, "claim after success lifted the lock", claim(t, s, "u1", pw, t0.Add(3*time.Second), policy),
		storage.AttemptClaim{Allowed: true, Failures: 1})

	// The claim that reached HardLimit may itself succeed.
	now := t0.Add(time.Hour)
	ok(t, s.Unlock(ctx, "u1"), "Unlock")
	p := storage.LockPolicy{FreeFailures: 3, HardLimit: 3}
	claim(t, s, "u1", pw, now, p)
	claim(t, s, "u1", pw, now, p)
	if c := claim(t, s, "u1", pw, now, p); !c.Allowed || !c.HardLocked {
		t.Fatalf("claim reaching HardLimit: %+v", c)
	}
	ok(t, s.AttemptSucceeded(ctx, "u1", pw, storage.AttemptClaim{}, now, p), "AttemptSucceeded")
	wantClaim(t, "claim after the HardLimit attempt succeeded", claim(t, s, "u1", pw, now, p),
		storage.AttemptClaim{Allowed: true, Failures: 1})

	// Success without any claim is harmless.
	addUser(t, s, "u2")
	ok(t, s.AttemptSucceeded(ctx, "u2", pw, storage.AttemptClaim{}, now, policy), "AttemptSucceeded without row")
	wantClaim(t, "first claim of u2", claim(t, s, "u2", pw, now, policy), storage.AttemptClaim{Allowed: true, Failures: 1})
}

func testAttemptIndependent(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	for i := 0; i < policy.FreeFailures; i++ {
		claim(t, s, "u1", storage.FactorPassword, t0, policy)
	}
	if c := claim(t, s, "u1", storage.FactorPassword, t0, policy); c.Allowed {
		t.Fatalf("password not locked: %+v", c)
	}
	wantClaim(t, "totp of the same user", claim(t, s, "u1", storage.FactorTOTP, t0, policy),
		storage.AttemptClaim{Allowed: true, Failures: 1})
	wantClaim(t, "password of another user", claim(t, s, "u2", storage.FactorPassword, t0, policy),
		storage.AttemptClaim{Allowed: true, Failures: 1})

	// Resetting one factor leaves the other alone.
	ok(t, s.AttemptSucceeded(ctx, "u1", storage.FactorTOTP, storage.AttemptClaim{}, t0, policy), "AttemptSucceeded totp")
	if c := claim(t, s, "u1", storage.FactorPassword, t0, policy); c.Allowed {
		t.Fatalf("totp success unlocked the password: %+v", c)
	}
	states, err := s.AttemptStates(ctx, "u1")
	ok(t, err, "AttemptStates")
	if len(states) != 2 {
		t.Fatalf("AttemptStates: want one row per factor, got %+v", states)
	}
	byFactor := map[storage.Factor]storage.AttemptState{}
	for _, st := range states {
		byFactor[st.Factor] = st
	}
	if byFactor[storage.FactorPassword].Failures != policy.FreeFailures || byFactor[storage.FactorTOTP].Failures != 0 {
		t.Fatalf("AttemptStates: %+v", states)
	}
	// Unlock clears every factor of the user, and only that user.
	claim(t, s, "u2", storage.FactorPassword, t0, policy)
	ok(t, s.Unlock(ctx, "u1"), "Unlock")
	wantClaim(t, "password after Unlock", claim(t, s, "u1", storage.FactorPassword, t0, policy),
		storage.AttemptClaim{Allowed: true, Failures: 1})
	wantClaim(t, "other user after Unlock", claim(t, s, "u2", storage.FactorPassword, t0, policy),
		storage.AttemptClaim{Allowed: true, Failures: 3})
}

// rounds is how often each concurrency test repeats its race: a
// non-atomic backend loses a single race only some of the time.
const rounds = 5

func testAttemptConcurrent(t *testing.T, s storage.Store) {
	const n = 100
	for r := range rounds {
		user := fmt.Sprintf("u%d", r)
		addUser(t, s, user)
		claims := make([]storage.AttemptClaim, n)
		errs := together(n, func(i int) error {
			var err error
			claims[i], err = s.ClaimAttempt(context.Background(), user, storage.FactorPassword, t0, policy)
			return err
		})
		if m := tally(errs); m["nil"] != n {
			t.Fatalf("round %d: concurrent claims: %v", r, m)
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
			t.Fatalf("round %d: allowed claims had failure counts %v, want exactly 1..%d", r, failures, policy.FreeFailures)
		}
	}
}

// ---------------------------------------------------------------------------
// Clients

func testClients(t *testing.T, s storage.Store) {
	ctx := context.Background()
	_, err := s.ClientByID(ctx, "nope")
	isErr(t, err, storage.ErrNotFound, "ClientByID unknown")

	conf := storage.Client{ID: "web", SecretHash: hash("secret"), Name: "Web app",
		RedirectURIs:           []string{"https://rp.example/cb", "https://rp.example/cb2?x=1&y=\"q\""},
		PostLogoutRedirectURIs: []string{"https://rp.example/bye"}, PKCERequired: true, CreatedAt: t0}
	pub := storage.Client{ID: "cli", Name: "CLI", RedirectURIs: []string{"http://127.0.0.1/cb"}, Public: true,
		PKCERequired: true, CreatedAt: t0}
	ok(t, s.CreateClient(ctx, conf), "CreateClient")
	ok(t, s.CreateClient(ctx, pub), "CreateClient public")
	isErr(t, s.CreateClient(ctx, storage.Client{ID: "web", Name: "dup"}), storage.ErrConflict, "CreateClient duplicate")

	got, err := s.ClientByID(ctx, "web")
	ok(t, err, "ClientByID")
	same(t, "ClientByID", got, conf)
	got, err = s.ClientByID(ctx, "cli")
	ok(t, err, "ClientByID public")
	same(t, "ClientByID public", got, pub)
	if len(got.SecretHash) != 0 || len(got.PostLogoutRedirectURIs) != 0 {
		t.Fatalf("public client came back with secret or logout URIs: %+v", got)
	}

	list, err := s.ListClients(ctx)
	ok(t, err, "ListClients")
	slices.SortFunc(list, func(a, b storage.Client) int { return strings.Compare(a.ID, b.ID) })
	same(t, "ListClients", list, []storage.Client{pub, conf})

	ok(t, s.DeleteClient(ctx, "web"), "DeleteClient")
	_, err = s.ClientByID(ctx, "web")
	isErr(t, err, storage.ErrNotFound, "ClientByID after delete")
	isErr(t, s.DeleteClient(ctx, "web"), storage.ErrNotFound, "DeleteClient twice")
	if _, err := s.ClientByID(ctx, "cli"); err != nil {
		t.Fatalf("DeleteClient removed another client: %v", err)
	}
}

// ---------------------------------------------------------------------------
// Auth requests

func testAuthRequestRoundTrip(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	zero, fifty := int64(0), int64(50)
	full := storage.AuthRequest{
		ID: "ar-full", ClientID: "client-a", RedirectURI: "https://rp.example/cb?a=1",
		Scopes: []string{"openid", "profile", "email"}, State: "st", Nonce: "nn", ResponseType: "code",
		ResponseMode: "form_post", CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		CodeChallengeMethod: "S256", Prompt: []string{"login", "consent"}, MaxAge: &fifty,
		ACRValues: []string{"urn:a", "urn:b"}, LoginHint: "alice", HintSubject: "sub-1", UILocales: []string{"de", "en"},
		Stage: storage.StagePasswordOK, UserID: "u1", BindingHash: hash("cookie"), PasswordAt: t0.Add(time.Second),
		AuthTime: t0.Add(2 * time.Second), AMR: []string{"pwd"}, ACR: "urn:x",
		CreatedAt: t0, ExpiresAt: t0.Add(10 * time.Minute),
	}
	ok(t, s.CreateAuthRequest(ctx, full), "CreateAuthRequest")
	got, err := s.AuthRequestByID(ctx, full.ID, t0)
	ok(t, err, "AuthRequestByID")
	same(t, "AuthRequestByID full", got, full)

	minimal := storage.AuthRequest{ID: "ar-min", ClientID: "client-a", RedirectURI: "https://rp.example/cb",
		Scopes: []string{"openid"}, ResponseType: "code", Stage: storage.StageCreated, MaxAge: &zero,
		CreatedAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}
	ok(t, s.CreateAuthRequest(ctx, minimal), "CreateAuthRequest minimal")
	got, err = s.AuthRequestByID(ctx, minimal.ID, t0)
	ok(t, err, "AuthRequestByID minimal")
	same(t, "AuthRequestByID minimal", got, minimal)
	if got.MaxAge == nil || *got.MaxAge != 0 {
		t.Fatalf("MaxAge 0 came back as %v", got.MaxAge)
	}
	if got.Done() {
		t.Fatalf("a created request is Done")
	}

	noMax := minimal
	noMax.ID, noMax.MaxAge = "ar-nomax", nil
	ok(t, s.CreateAuthRequest(ctx, noMax), "CreateAuthRequest without max_age")
	got, err = s.AuthRequestByID(ctx, noMax.ID, t0)
	ok(t, err, "AuthRequestByID")
	if got.MaxAge != nil {
		t.Fatalf("absent MaxAge came back as %d", *got.MaxAge)
	}

	isErr(t, s.CreateAuthRequest(ctx, minimal), storage.ErrConflict, "CreateAuthRequest duplicate id")
	_, err = s.AuthRequestByID(ctx, "unknown", t0)
	isErr(t, err, storage.ErrNotFound, "AuthRequestByID unknown")
	// Expired means ExpiresAt <= now.
	_, err = s.AuthRequestByID(ctx, minimal.ID, minimal.ExpiresAt.Add(-time.Second))
	ok(t, err, "AuthRequestByID one second before expiry")
	_, err = s.AuthRequestByID(ctx, minimal.ID, minimal.ExpiresAt)
	isErr(t, err, storage.ErrNotFound, "AuthRequestByID at expiry")
}

func testAuthRequestStateMachine(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	now := t0

	// The browser binding is stored with the request (set at /authorize).
	bound := newAuthRequest("ar1", now)
	bound.BindingHash = hash("cookie-1")
	ok(t, s.CreateAuthRequest(ctx, bound), "CreateAuthRequest bound")
	a, _ := s.AuthRequestByID(ctx, "ar1", now)
	if string(a.BindingHash) != string(hash("cookie-1")) {
		t.Fatalf("binding not stored: %x", a.BindingHash)
	}

	// created → password_ok → password_ok (another user re-entered) → done.
	ok(t, s.PasswordVerified(ctx, "ar1", "u1", now), "PasswordVerified from created")
	a, _ = s.AuthRequestByID(ctx, "ar1", now)
	if a.Stage != storage.StagePasswordOK || a.UserID != "u1" || !a.PasswordAt.Equal(now) || a.Done() {
		t.Fatalf("after PasswordVerified: %+v", a)
	}
	ok(t, s.PasswordVerified(ctx, "ar1", "u2", now.Add(time.Second)), "PasswordVerified from password_ok")
	a, _ = s.AuthRequestByID(ctx, "ar1", now)
	if a.Stage != storage.StagePasswordOK || a.UserID != "u2" || !a.PasswordAt.Equal(now.Add(time.Second)) {
		t.Fatalf("after second PasswordVerified: %+v", a)
	}
	isErr(t, s.PasswordVerified(ctx, "unknown", "u1", now), storage.ErrNotFound, "PasswordVerified unknown")
	isErr(t, s.PasswordVerified(ctx, "ar1", "u1", a.ExpiresAt), storage.ErrNotFound, "PasswordVerified on expired request")

	// CompleteFromSession only from created.
	sess := storage.Session{UserID: "u1", AuthTime: now.Add(-time.Hour), AMR: []string{"pwd", "otp"}, ACR: "urn:mfa"}
	isErr(t, s.CompleteFromSession(ctx, "ar1", sess, now), storage.ErrWrongState, "CompleteFromSession from password_ok")
	isErr(t, s.CompleteFromSession(ctx, "unknown", sess, now), storage.ErrNotFound, "CompleteFromSession unknown")
	addAuthRequest(t, s, "ar2", now)
	ok(t, s.CompleteFromSession(ctx, "ar2", sess, now), "CompleteFromSession")
	a, _ = s.AuthRequestByID(ctx, "ar2", now)
	if a.Stage != storage.StageDone || a.UserID != "u1" || !a.AuthTime.Equal(sess.AuthTime) ||
		!slices.Equal(a.AMR, sess.AMR) || a.ACR != sess.ACR || !a.Done() {
		t.Fatalf("after CompleteFromSession: %+v", a)
	}
	isErr(t, s.CompleteFromSession(ctx, "ar2", sess, now), storage.ErrWrongState, "CompleteFromSession twice")
	// done is final for the password step.
	isErr(t, s.PasswordVerified(ctx, "ar2", "u1", now), storage.ErrWrongState, "PasswordVerified on done")
	a, _ = s.AuthRequestByID(ctx, "ar2", now)
	if a.Stage != storage.StageDone {
		t.Fatalf("PasswordVerified changed a done request: %+v", a)
	}
}

func testCompleteTOTP(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte("k"), Confirmed: true, LastStep: 100}), "PutTOTP")
	now := t0
	amr := []string{"pwd", "otp", "mfa"}

	addAuthRequest(t, s, "ar", now)
	isErr(t, s.CompleteTOTP(ctx, "ar", "u1", 101, now, amr, "urn:mfa"), storage.ErrWrongState, "CompleteTOTP from created")
	isErr(t, s.CompleteTOTP(ctx, "unknown", "u1", 101, now, amr, "urn:mfa"), storage.ErrNotFound, "CompleteTOTP unknown")
	ok(t, s.PasswordVerified(ctx, "ar", "u1", now), "PasswordVerified")
	isErr(t, s.CompleteTOTP(ctx, "ar", "u2", 101, now, amr, "urn:mfa"), storage.ErrWrongState, "CompleteTOTP for another user")

	// Replay: a step at or before the last accepted one.
	claim(t, s, "u1", storage.FactorTOTP, now, policy)
	claim(t, s, "u1", storage.FactorTOTP, now, policy)
	for _, step := range []int64{100, 99, 0} {
		isErr(t, s.CompleteTOTP(ctx, "ar", "u1", step, now, amr, "urn:mfa"), storage.ErrReplay, "CompleteTOTP step %d", step)
	}
	a, _ := s.AuthRequestByID(ctx, "ar", now)
	if a.Stage != storage.StagePasswordOK || a.Done() {
		t.Fatalf("a replayed code changed the request: %+v", a)
	}
	if c, _ := s.TOTPByUser(ctx, "u1"); c.LastStep != 100 {
		t.Fatalf("a replayed code moved LastStep to %d", c.LastStep)
	}

	later := now.Add(30 * time.Second)
	ok(t, s.CompleteTOTP(ctx, "ar", "u1", 101, later, amr, "urn:mfa"), "CompleteTOTP")
	a, err := s.AuthRequestByID(ctx, "ar", later)
	ok(t, err, "AuthRequestByID")
	if a.Stage != storage.StageDone || !a.AuthTime.Equal(later) || !slices.Equal(a.AMR, amr) || a.ACR != "urn:mfa" ||
		a.UserID != "u1" || !a.Done() {
		t.Fatalf("after CompleteTOTP: %+v", a)
	}
	if c, _ := s.TOTPByUser(ctx, "u1"); c.LastStep != 101 {
		t.Fatalf("LastStep = %d, want 101", c.LastStep)
	}
	states, _ := s.AttemptStates(ctx, "u1")
	if len(states) != 1 || states[0].Factor != storage.FactorTOTP || states[0].Failures != 0 {
		t.Fatalf("TOTP failures not reset: %+v", states)
	}
	isErr(t, s.CompleteTOTP(ctx, "ar", "u1", 102, later, amr, "urn:mfa"), storage.ErrWrongState, "CompleteTOTP on done")

	// The same step on another request of the same user is a replay.
	addAuthRequest(t, s, "ar-b", now)
	ok(t, s.PasswordVerified(ctx, "ar-b", "u1", now), "PasswordVerified")
	isErr(t, s.CompleteTOTP(ctx, "ar-b", "u1", 101, later, amr, "urn:mfa"), storage.ErrReplay, "CompleteTOTP same step, other request")
	ok(t, s.CompleteTOTP(ctx, "ar-b", "u1", 102, later, amr, "urn:mfa"), "CompleteTOTP next step")

	// Expired requests cannot complete.
	addAuthRequest(t, s, "ar-c", now)
	ok(t, s.PasswordVerified(ctx, "ar-c", "u1", now), "PasswordVerified")
	exp := newAuthRequest("ar-c", now).ExpiresAt
	isErr(t, s.CompleteTOTP(ctx, "ar-c", "u1", 200, exp, amr, "urn:mfa"), storage.ErrNotFound, "CompleteTOTP on expired request")
	if c, _ := s.TOTPByUser(ctx, "u1"); c.LastStep != 102 {
		t.Fatalf("CompleteTOTP on an expired request moved LastStep to %d", c.LastStep)
	}
}

func testCompleteTOTPConcurrent(t *testing.T, s storage.Store) {
	ctx := context.Background()
	const n = 20
	for r := range rounds {
		user := fmt.Sprintf("u%d", r)
		addUser(t, s, user)
		ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: user, Secret: []byte("k"), Confirmed: true, LastStep: 10}), "PutTOTP")
		id := func(i int) string { return fmt.Sprintf("ar-%d-%d", r, i) }
		for i := range n {
			addAuthRequest(t, s, id(i), t0)
			ok(t, s.PasswordVerified(ctx, id(i), user, t0), "PasswordVerified")
		}
		errs := together(n, func(i int) error {
			return s.CompleteTOTP(ctx, id(i), user, 11, t0, []string{"pwd", "otp"}, "urn:mfa")
		})
		if m := tally(errs); m["nil"] != 1 || m["replay"] != n-1 {
			t.Fatalf("round %d: %d concurrent CompleteTOTP with one step: %v, want 1 nil and %d ErrReplay", r, n, m, n-1)
		}
		for i := range n {
			a, err := s.AuthRequestByID(ctx, id(i), t0)
			ok(t, err, "AuthRequestByID")
			if a.Done() != (errs[i] == nil) {
				t.Fatalf("round %d, request %d: Done()=%v but CompleteTOTP returned %v", r, i, a.Done(), errs[i])
			}
			if errs[i] != nil && a.Stage != storage.StagePasswordOK {
				t.Fatalf("round %d, request %d: a replayed code moved the request to %q", r, i, a.Stage)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Authorization codes

func testAuthCodes(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	now := t0

	addAuthRequest(t, s, "ar-created", now)
	isErr(t, s.SaveAuthCode(ctx, "ar-created", hash("code-x"), now, now.Add(time.Minute)), storage.ErrWrongState, "SaveAuthCode on created")
	ok(t, s.PasswordVerified(ctx, "ar-created", "u1", now), "PasswordVerified")
	isErr(t, s.SaveAuthCode(ctx, "ar-created", hash("code-x"), now, now.Add(time.Minute)), storage.ErrWrongState, "SaveAuthCode on password_ok")
	_, err := s.ConsumeAuthCode(ctx, hash("code-x"), now)
	isErr(t, err, storage.ErrNotFound, "ConsumeAuthCode of a refused code")
	isErr(t, s.SaveAuthCode(ctx, "unknown", hash("code-y"), now, now.Add(time.Minute)), storage.ErrNotFound, "SaveAuthCode unknown request")

	want := doneRequest(t, s, "ar", "u1", now)
	ok(t, s.SaveAuthCode(ctx, "ar", hash("code-1"), now, now.Add(time.Minute)), "SaveAuthCode")
	isErr(t, s.SaveAuthCode(ctx, "ar", hash("code-2"), now, now.Add(time.Minute)), storage.ErrWrongState, "SaveAuthCode twice")
	_, err = s.ConsumeAuthCode(ctx, hash("code-2"), now)
	isErr(t, err, storage.ErrNotFound, "ConsumeAuthCode of the refused second code")

	got, err := s.ConsumeAuthCode(ctx, hash("code-1"), now.Add(59*time.Second))
	ok(t, err, "ConsumeAuthCode")
	same(t, "ConsumeAuthCode request", got, want)
	_, err = s.ConsumeAuthCode(ctx, hash("code-1"), now.Add(59*time.Second))
	isErr(t, err, storage.ErrReused, "ConsumeAuthCode twice")

	_, err = s.ConsumeAuthCode(ctx, hash("never issued"), now)
	isErr(t, err, storage.ErrNotFound, "ConsumeAuthCode unknown")

	// Expired: ExpiresAt <= now.
	doneRequest(t, s, "ar-exp", "u1", now)
	ok(t, s.SaveAuthCode(ctx, "ar-exp", hash("code-exp"), now, now.Add(time.Minute)), "SaveAuthCode")
	_, err = s.ConsumeAuthCode(ctx, hash("code-exp"), now.Add(time.Minute))
	isErr(t, err, storage.ErrNotFound, "ConsumeAuthCode at expiry")
}

func testAuthCodeReuse(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	now := t0
	doneRequest(t, s, "ar", "u1", now)
	doneRequest(t, s, "ar-other", "u1", now)
	ok(t, s.SaveAuthCode(ctx, "ar", hash("code"), now, now.Add(time.Minute)), "SaveAuthCode")
	_, err := s.ConsumeAuthCode(ctx, hash("code"), now)
	ok(t, err, "ConsumeAuthCode")

	// Tokens issued from the code, rotated once, and an unrelated pair.
	at1 := newAccessToken("at1", "u1", "client-a", now)
	at1.AuthRequestID = "ar"
	ok(t, s.CreateAccessToken(ctx, at1), "CreateAccessToken")
	rt1 := newRefreshToken("rt1", "fam1", "u1", "client-a", now)
	rt1.AuthRequestID = "ar"
	at2 := newAccessToken("at2", "u1", "client-a", now)
	at2.AuthRequestID, at2.RefreshTokenID = "ar", "rt1"
	ok(t, s.CreateRefreshToken(ctx, rt1, at2), "CreateRefreshToken")
	rt2 := newRefreshToken("rt2", "fam1", "u1", "client-a", now)
	rt2.AuthRequestID = "ar"
	at3 := newAccessToken("at3", "u1", "client-a", now)
	at3.RefreshTokenID = "rt2"
	ok(t, s.RotateRefreshToken(ctx, rt1.TokenHash, rt2, at3, now), "RotateRefreshToken")
	other := newRefreshToken("rt-other", "fam-other", "u1", "client-a", now)
	other.AuthRequestID = "ar-other"
	atOther := newAccessToken("at-other", "u1", "client-a", now)
	atOther.AuthRequestID = "ar-other"
	ok(t, s.CreateRefreshToken(ctx, other, atOther), "CreateRefreshToken other")
	for _, id := range []string{"at1", "at2", "at3"} {
		accessLive(t, s, id, now)
	}
	refreshLive(t, s, rt2, now)

	_, err = s.ConsumeAuthCode(ctx, hash("code"), now.Add(time.Second))
	isErr(t, err, storage.ErrReused, "ConsumeAuthCode replayed")
	for _, id := range []string{"at1", "at2", "at3"} {
		accessGone(t, s, id, now.Add(2*time.Second))
	}
	refreshGone(t, s, rt1, now.Add(2*time.Second))
	refreshGone(t, s, rt2, now.Add(2*time.Second))
	accessLive(t, s, "at-other", now.Add(2*time.Second))
	refreshLive(t, s, other, now.Add(2*time.Second))
	// And again: still refused.
	_, err = s.ConsumeAuthCode(ctx, hash("code"), now.Add(3*time.Second))
	isErr(t, err, storage.ErrReused, "ConsumeAuthCode replayed twice")
}

func testAuthCodeConcurrent(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	const n = 8
	for r := range rounds {
		id, code := fmt.Sprintf("ar-%d", r), hash(fmt.Sprintf("code-%d", r))
		doneRequest(t, s, id, "u1", t0)
		ok(t, s.SaveAuthCode(ctx, id, code, t0, t0.Add(time.Minute)), "SaveAuthCode")
		got := make([]storage.AuthRequest, n)
		errs := together(n, func(i int) error {
			var err error
			got[i], err = s.ConsumeAuthCode(ctx, code, t0)
			return err
		})
		if m := tally(errs); m["nil"] != 1 || m["reused"] != n-1 {
			t.Fatalf("round %d: %d concurrent ConsumeAuthCode: %v, want 1 nil and %d ErrReused", r, n, m, n-1)
		}
		for i, err := range errs {
			if err == nil && got[i].ID != id {
				t.Fatalf("round %d: winner got request %q", r, got[i].ID)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Tokens

func testAccessTokens(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	now := t0
	at := newAccessToken("at1", "u1", "client-a", now)
	at.AuthRequestID = "ar-1"
	ok(t, s.CreateAccessToken(ctx, at), "CreateAccessToken")
	isErr(t, s.CreateAccessToken(ctx, at), storage.ErrConflict, "CreateAccessToken duplicate")

	got, err := s.AccessTokenByID(ctx, "at1", now)
	ok(t, err, "AccessTokenByID")
	same(t, "AccessTokenByID", got, at)
	_, err = s.AccessTokenByID(ctx, "at1", at.ExpiresAt.Add(-time.Second))
	ok(t, err, "AccessTokenByID one second before expiry")
	_, err = s.AccessTokenByID(ctx, "at1", at.ExpiresAt)
	isErr(t, err, storage.ErrNotFound, "AccessTokenByID at expiry")
	_, err = s.AccessTokenByID(ctx, "unknown", now)
	isErr(t, err, storage.ErrNotFound, "AccessTokenByID unknown")

	ok(t, s.CreateAccessToken(ctx, newAccessToken("at2", "u1", "client-a", now)), "CreateAccessToken")
	ok(t, s.RevokeAccessToken(ctx, "at1", now), "RevokeAccessToken")
	accessGone(t, s, "at1", now)
	accessLive(t, s, "at2", now)
	ok(t, s.RevokeAccessToken(ctx, "at1", now), "RevokeAccessToken twice")
	isErr(t, s.RevokeAccessToken(ctx, "unknown", now), storage.ErrNotFound, "RevokeAccessToken unknown")
}

func testRefreshTokens(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	now := t0

	rt := newRefreshToken("rt1", "fam1", "u1", "client-a", now)
	rt.AuthRequestID = "ar-1"
	at := newAccessToken("at1", "u1", "client-a", now)
	at.RefreshTokenID = "rt1"
	ok(t, s.CreateRefreshToken(ctx, rt, at), "CreateRefreshToken")
	got, err := s.RefreshTokenByHash(ctx, rt.TokenHash, now)
	ok(t, err, "RefreshTokenByHash")
	same(t, "RefreshTokenByHash", got, rt)
	gotAT, err := s.AccessTokenByID(ctx, "at1", now)
	ok(t, err, "AccessTokenByID of the pair")
	same(t, "access token of the pair", gotAT, at)
	got, err = s.RefreshTokenByID(ctx, "rt1")
	ok(t, err, "RefreshTokenByID")
	same(t, "RefreshTokenByID", got, rt)
	_, err = s.RefreshTokenByID(ctx, "unknown")
	isErr(t, err, storage.ErrNotFound, "RefreshTokenByID unknown")
	_, err = s.RefreshTokenByHash(ctx, hash("unknown"), now)
	isErr(t, err, storage.ErrNotFound, "RefreshTokenByHash unknown")
	_, err = s.RefreshTokenByHash(ctx, rt.TokenHash, rt.ExpiresAt)
	isErr(t, err, storage.ErrNotFound, "RefreshTokenByHash at expiry")

	// Atomic pair: a conflicting access token stores neither.
	rtBad := newRefreshToken("rt-bad", "fam-bad", "u1", "client-a", now)
	err = s.CreateRefreshToken(ctx, rtBad, newAccessToken("at1", "u1", "client-a", now))
	isErr(t, err, storage.ErrConflict, "CreateRefreshToken with a duplicate access token id")
	_, err = s.RefreshTokenByID(ctx, "rt-bad")
	isErr(t, err, storage.ErrNotFound, "refresh token of a failed CreateRefreshToken")
	// Without an access token.
	alone := newRefreshToken("rt-alone", "fam-alone", "u1", "client-a", now)
	ok(t, s.CreateRefreshToken(ctx, alone, storage.AccessToken{}), "CreateRefreshToken without access token")
	refreshLive(t, s, alone, now)
	isErr(t, s.CreateRefreshToken(ctx, newRefreshToken("rt-alone", "f", "u1", "client-a", now), storage.AccessToken{}),
		storage.ErrConflict, "CreateRefreshToken duplicate")

	// Rotation.
	next := newRefreshToken("rt2", "", "u1", "client-a", now.Add(time.Minute))
	nextAT := newAccessToken("at2", "u1", "client-a", now.Add(time.Minute))
	nextAT.RefreshTokenID = "rt2"
	ok(t, s.RotateRefreshToken(ctx, rt.TokenHash, next, nextAT, now.Add(time.Minute)), "RotateRefreshToken")
	old, err := s.RefreshTokenByID(ctx, "rt1")
	ok(t, err, "RefreshTokenByID old")
	if !old.UsedAt.Equal(now.Add(time.Minute)) || !old.RevokedAt.IsZero() {
		t.Fatalf("rotated token: UsedAt=%v RevokedAt=%v", old.UsedAt, old.RevokedAt)
	}
	got, err = s.RefreshTokenByHash(ctx, next.TokenHash, now.Add(time.Minute))
	ok(t, err, "RefreshTokenByHash new")
	if got.FamilyID != "fam1" || got.ID != "rt2" {
		t.Fatalf("rotated-to token: family %q id %q, want fam1 rt2", got.FamilyID, got.ID)
	}
	accessLive(t, s, "at2", now.Add(time.Minute))

	// Rotating expired, revoked or unknown tokens.
	n3 := newRefreshToken("rt3", "", "u1", "client-a", now)
	isErr(t, s.RotateRefreshToken(ctx, next.TokenHash, n3, storage.AccessToken{}, next.ExpiresAt), storage.ErrNotFound,
		"RotateRefreshToken of an expired token")
	isErr(t, s.RotateRefreshToken(ctx, hash("unknown"), n3, storage.AccessToken{}, now), storage.ErrNotFound,
		"RotateRefreshToken of an unknown token")
	ok(t, s.RevokeRefreshFamily(ctx, "fam-alone", now), "RevokeRefreshFamily")
	isErr(t, s.RotateRefreshToken(ctx, alone.TokenHash, n3, storage.AccessToken{}, now), storage.ErrNotFound,
		"RotateRefreshToken of a revoked token")
	_, err = s.RefreshTokenByHash(ctx, alone.TokenHash, now)
	isErr(t, err, storage.ErrNotFound, "RefreshTokenByHash revoked")
	_, err = s.RefreshTokenByID(ctx, "rt3")
	isErr(t, err, storage.ErrNotFound, "a refused rotation stored its next token")
	refreshLive(t, s, next, now.Add(time.Minute))
}

// rotationChain creates rt1 (with at1) and rotates it to rt2 (with at2).
func rotationChain(t *testing.T, s storage.Store, now time.Time) (rt1, rt2 storage.RefreshToken) {
	t.Helper()
	ctx := context.Background()
	addUser(t, s, "u1")
	rt1 = newRefreshToken("rt1", "fam", "u1", "client-a", now)
	at1 := newAccessToken("at1", "u1", "client-a", now)
	at1.RefreshTokenID = "rt1"
	ok(t, s.CreateRefreshToken(ctx, rt1, at1), "CreateRefreshToken")
	rt2 = newRefreshToken("rt2", "fam", "u1", "client-a", now)
	at2 := newAccessToken("at2", "u1", "client-a", now)
	at2.RefreshTokenID = "rt2"
	ok(t, s.RotateRefreshToken(ctx, rt1.TokenHash, rt2, at2, now), "RotateRefreshToken")
	// An unrelated family that reuse must not touch.
	ok(t, s.CreateRefreshToken(ctx, newRefreshToken("rt-x", "fam-x", "u1", "client-a", now),
		newAccessToken("at-x", "u1", "client-a", now)), "CreateRefreshToken")
	return rt1, rt2
}

func testRefreshReuseByHash(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	rt1, rt2 := rotationChain(t, s, now)
	refreshLive(t, s, rt2, now)
	accessLive(t, s, "at2", now)

	_, err := s.RefreshTokenByHash(ctx, rt1.TokenHash, now)
	isErr(t, err, storage.ErrReused, "RefreshTokenByHash of a used token")
	refreshGone(t, s, rt2, now)
	accessGone(t, s, "at1", now)
	accessGone(t, s, "at2", now)
	accessLive(t, s, "at-x", now)
	refreshLive(t, s, newRefreshToken("rt-x", "fam-x", "u1", "client-a", now), now)
	_, err = s.RefreshTokenByHash(ctx, rt1.TokenHash, now)
	isErr(t, err, storage.ErrReused, "RefreshTokenByHash of a used token, again")
}

func testRefreshReuseByRotate(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	rt1, rt2 := rotationChain(t, s, now)
	rt3 := newRefreshToken("rt3", "fam", "u1", "client-a", now)
	at3 := newAccessToken("at3", "u1", "client-a", now)
	err := s.RotateRefreshToken(ctx, rt1.TokenHash, rt3, at3, now)
	isErr(t, err, storage.ErrReused, "RotateRefreshToken of a used token")
	refreshGone(t, s, rt2, now)
	accessGone(t, s, "at2", now)
	accessGone(t, s, "at1", now)
	_, err = s.RefreshTokenByID(ctx, "rt3")
	isErr(t, err, storage.ErrNotFound, "a reused rotation stored its next token")
	_, err = s.AccessTokenByID(ctx, "at3", now)
	isErr(t, err, storage.ErrNotFound, "a reused rotation stored its access token")
	accessLive(t, s, "at-x", now)
	// The newest token cannot rotate either.
	rt4 := newRefreshToken("rt4", "fam", "u1", "client-a", now)
	if err := s.RotateRefreshToken(ctx, rt2.TokenHash, rt4, storage.AccessToken{}, now); err == nil {
		t.Fatalf("RotateRefreshToken of a revoked family's newest token succeeded")
	}
}

func testRefreshConcurrentRotate(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	const n = 8
	for r := range rounds {
		fam := fmt.Sprintf("fam-%d", r)
		rt := newRefreshToken("rt-"+fam, fam, "u1", "client-a", t0)
		ok(t, s.CreateRefreshToken(ctx, rt, storage.AccessToken{}), "CreateRefreshToken")
		nexts := make([]storage.RefreshToken, n)
		for i := range n {
			nexts[i] = newRefreshToken(fmt.Sprintf("next-%d-%d", r, i), fam, "u1", "client-a", t0)
		}
		atID := func(i int) string { return fmt.Sprintf("at-%d-%d", r, i) }
		errs := together(n, func(i int) error {
			return s.RotateRefreshToken(ctx, rt.TokenHash, nexts[i], newAccessToken(atID(i), "u1", "client-a", t0), t0)
		})
		if m := tally(errs); m["nil"] != 1 || m["reused"] != n-1 {
			t.Fatalf("round %d: %d concurrent rotations: %v, want 1 nil and %d ErrReused", r, n, m, n-1)
		}
		// The losers' reuse revoked the winner's new token and access token.
		for i, err := range errs {
			if err == nil {
				refreshGone(t, s, nexts[i], t0)
				accessGone(t, s, atID(i), t0)
			} else if _, err := s.RefreshTokenByID(ctx, nexts[i].ID); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("round %d: losing rotation %d stored its token: %v", r, i, err)
			}
		}
	}
}

func testRevokeFamily(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	_, rt2 := rotationChain(t, s, now)
	ok(t, s.RevokeRefreshFamily(ctx, "fam", now), "RevokeRefreshFamily")
	refreshGone(t, s, rt2, now)
	accessGone(t, s, "at1", now)
	accessGone(t, s, "at2", now)
	got, err := s.RefreshTokenByID(ctx, "rt2")
	ok(t, err, "RefreshTokenByID")
	if !got.RevokedAt.Equal(now) {
		t.Fatalf("RevokedAt = %v, want %v", got.RevokedAt, now)
	}
	accessLive(t, s, "at-x", now)
	refreshLive(t, s, newRefreshToken("rt-x", "fam-x", "u1", "client-a", now), now)
	ok(t, s.RevokeRefreshFamily(ctx, "no-such-family", now), "RevokeRefreshFamily unknown")
}

// testEndUserAtClient: ending a user's sign-ins at one client revokes that
// pair's tokens and nobody else's.
func testEndUserAtClient(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	type pair struct{ user, client string }
	pairs := []pair{{"u1", "c1"}, {"u1", "c2"}, {"u2", "c1"}}
	for _, p := range pairs {
		id := p.user + "-" + p.client
		ok(t, s.CreateAccessToken(ctx, newAccessToken("at-"+id, p.user, p.client, now)), "CreateAccessToken")
		ok(t, s.CreateRefreshToken(ctx, newRefreshToken("rt-"+id, "fam-"+id, p.user, p.client, now),
			newAccessToken("at-rt-"+id, p.user, p.client, now)), "CreateRefreshToken")
	}
	e, err := s.EndUserSessions(ctx, "u1", "c1", now)
	ok(t, err, "EndUserSessions at c1")
	if e.Tokens != 3 {
		t.Errorf("EndUserSessions at c1 revoked %d tokens, want 3", e.Tokens)
	}
	for _, p := range pairs {
		id := p.user + "-" + p.client
		rt := newRefreshToken("rt-"+id, "fam-"+id, p.user, p.client, now)
		if p == (pair{"u1", "c1"}) {
			accessGone(t, s, "at-"+id, now)
			accessGone(t, s, "at-rt-"+id, now)
			refreshGone(t, s, rt, now)
		} else {
			accessLive(t, s, "at-"+id, now)
			accessLive(t, s, "at-rt-"+id, now)
			refreshLive(t, s, rt, now)
		}
	}
}

// ---------------------------------------------------------------------------
// Sessions

func testSessions(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	now := t0
	sess := storage.Session{IDHash: hash("cookie"), UserID: "u1", AuthTime: now.Add(-time.Minute),
		AMR: []string{"pwd", "otp", "mfa"}, ACR: "urn:mfa", CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}
	ok(t, s.CreateSession(ctx, sess), "CreateSession")
	isErr(t, s.CreateSession(ctx, sess), storage.ErrConflict, "CreateSession duplicate")
	isErr(t, s.CreateSession(ctx, storage.Session{IDHash: hash("x"), UserID: "nobody", ExpiresAt: now.Add(time.Hour)}),
		storage.ErrNotFound, "CreateSession for unknown user")

	got, err := s.SessionByHash(ctx, sess.IDHash, now)
	ok(t, err, "SessionByHash")
	same(t, "SessionByHash", got, sess)
	_, err = s.SessionByHash(ctx, hash("other"), now)
	isErr(t, err, storage.ErrNotFound, "SessionByHash unknown")
	_, err = s.SessionByHash(ctx, sess.IDHash, sess.ExpiresAt)
	isErr(t, err, storage.ErrNotFound, "SessionByHash at expiry")

	ok(t, s.TouchSession(ctx, sess.IDHash, now.Add(10*time.Minute)), "TouchSession")
	got, err = s.SessionByHash(ctx, sess.IDHash, now.Add(10*time.Minute))
	ok(t, err, "SessionByHash")
	if !got.LastSeenAt.Equal(now.Add(10*time.Minute)) || !got.CreatedAt.Equal(now) {
		t.Fatalf("after TouchSession: %+v", got)
	}
	isErr(t, s.TouchSession(ctx, sess.IDHash, sess.ExpiresAt), storage.ErrNotFound, "TouchSession on expired")
	isErr(t, s.TouchSession(ctx, hash("other"), now), storage.ErrNotFound, "TouchSession unknown")

	sess2 := sess
	sess2.IDHash = hash("cookie-2")
	ok(t, s.CreateSession(ctx, sess2), "CreateSession 2")
	ok(t, s.DeleteSession(ctx, sess.IDHash), "DeleteSession")
	_, err = s.SessionByHash(ctx, sess.IDHash, now)
	isErr(t, err, storage.ErrNotFound, "SessionByHash after delete")
	if _, err := s.SessionByHash(ctx, sess2.IDHash, now); err != nil {
		t.Fatalf("DeleteSession removed another session: %v", err)
	}
}

// ---------------------------------------------------------------------------
// Signing keys, settings, audit

func newKey(id string, created time.Time) storage.SigningKey {
	return storage.SigningKey{ID: id, Algorithm: "RS256", PrivateKey: []byte("pkcs8-" + id),
		PublicJWK: []byte(`{"kty":"RSA","kid":"` + id + `"}`), CreatedAt: created}
}

func keyIDs(ks []storage.SigningKey) []string {
	var ids []string
	for _, k := range ks {
		ids = append(ids, k.ID)
	}
	return ids
}

func testSigningKeys(t *testing.T, s storage.Store) {
	ctx := context.Background()
	ks, err := s.SigningKeys(ctx, t0)
	ok(t, err, "SigningKeys")
	if len(ks) != 0 {
		t.Fatalf("SigningKeys on empty store: %v", keyIDs(ks))
	}
	k1 := newKey("k1", t0)
	ok(t, s.AddSigningKey(ctx, k1, false, time.Time{}), "AddSigningKey first")
	isErr(t, s.AddSigningKey(ctx, newKey("k-x", t0.Add(time.Minute)), false, time.Time{}), storage.ErrConflict,
		"AddSigningKey without retiring while one is active")
	ks, err = s.SigningKeys(ctx, t0)
	ok(t, err, "SigningKeys")
	same(t, "SigningKeys after first", ks, []storage.SigningKey{k1})

	// Rotation: k1 retired at k2's creation, published until expireOldAt.
	k2 := newKey("k2", t0.Add(time.Hour))
	ok(t, s.AddSigningKey(ctx, k2, true, t0.Add(2*time.Hour)), "AddSigningKey retiring")
	ks, err = s.SigningKeys(ctx, t0.Add(time.Hour))
	ok(t, err, "SigningKeys")
	k1r := k1
	k1r.RetiredAt, k1r.ExpiresAt = k2.CreatedAt, t0.Add(2*time.Hour)
	same(t, "SigningKeys after rotation", ks, []storage.SigningKey{k2, k1r})
	ks, err = s.SigningKeys(ctx, t0.Add(2*time.Hour-time.Second))
	ok(t, err, "SigningKeys")
	if !slices.Equal(keyIDs(ks), []string{"k2", "k1"}) {
		t.Fatalf("SigningKeys just before the old key expires: %v", keyIDs(ks))
	}
	ks, err = s.SigningKeys(ctx, t0.Add(2*time.Hour))
	ok(t, err, "SigningKeys")
	same(t, "SigningKeys after the old key expired", ks, []storage.SigningKey{k2})

	// A third rotation keeps both retired keys until their own expiry.
	k3 := newKey("k3", t0.Add(90*time.Minute))
	ok(t, s.AddSigningKey(ctx, k3, true, t0.Add(3*time.Hour)), "AddSigningKey third")
	ks, err = s.SigningKeys(ctx, t0.Add(100*time.Minute))
	ok(t, err, "SigningKeys")
	if !slices.Equal(keyIDs(ks), []string{"k3", "k2", "k1"}) {
		t.Fatalf("SigningKeys newest first: %v", keyIDs(ks))
	}
	if !ks[0].RetiredAt.IsZero() || !ks[0].ExpiresAt.IsZero() || ks[1].RetiredAt.IsZero() {
		t.Fatalf("active/retired marks: %+v", ks)
	}
	isErr(t, s.AddSigningKey(ctx, newKey("k3", t0.Add(100*time.Minute)), true, t0.Add(4*time.Hour)), storage.ErrConflict,
		"AddSigningKey duplicate id")
	ks, _ = s.SigningKeys(ctx, t0.Add(100*time.Minute))
	if len(ks) == 0 || ks[0].ID != "k3" || !ks[0].RetiredAt.IsZero() {
		t.Fatalf("a failed AddSigningKey retired the active key: %+v", keyIDs(ks))
	}
}

// testSigningKeysNext: a key added with a later activation is listed at
// once, the current key keeps signing until then and is retired at that
// activation; a second rotation before it replaces the waiting key.
func testSigningKeysNext(t *testing.T, s storage.Store) {
	ctx := context.Background()
	k1 := newKey("k1", t0)
	ok(t, s.AddSigningKey(ctx, k1, false, time.Time{}), "AddSigningKey first")
	act := t0.Add(10 * time.Minute)
	k2 := newKey("k2", t0.Add(time.Minute))
	k2.ActivatesAt = act
	ok(t, s.AddSigningKey(ctx, k2, true, act.Add(48*time.Hour)), "AddSigningKey next")
	ks, err := s.SigningKeys(ctx, t0.Add(time.Minute))
	ok(t, err, "SigningKeys")
	k1r := k1
	k1r.RetiredAt, k1r.ExpiresAt = act, act.Add(48*time.Hour)
	same(t, "SigningKeys with a next key", ks, []storage.SigningKey{k2, k1r})
	for at, want := range map[time.Time]string{t0.Add(time.Minute): "k1", act.Add(-time.Second): "k1", act: "k2"} {
		if k, _ := storage.SigningKeyAt(ks, at); k.ID != want {
			t.Fatalf("signing key at %s: %q, want %q", at.Sub(t0), k.ID, want)
		}
	}
	// EnsureKey's insert still sees a key that is not retired.
	isErr(t, s.AddSigningKey(ctx, newKey("k-x", t0.Add(2*time.Minute)), false, time.Time{}), storage.ErrConflict,
		"AddSigningKey without retiring while a next key waits")

	// Rotating again before the activation: k2 is retired at k3's
	// activation (it may never sign), k1 keeps its own retirement.
	act3 := t0.Add(20 * time.Minute)
	k3 := newKey("k3", t0.Add(5*time.Minute))
	k3.ActivatesAt = act3
	ok(t, s.AddSigningKey(ctx, k3, true, act3.Add(48*time.Hour)), "AddSigningKey second next")
	ks, err = s.SigningKeys(ctx, t0.Add(5*time.Minute))
	ok(t, err, "SigningKeys")
	if !slices.Equal(keyIDs(ks), []string{"k3", "k2", "k1"}) || !ks[1].RetiredAt.Equal(act3) || !ks[2].RetiredAt.Equal(act) {
		t.Fatalf("after a second rotation: %+v", ks)
	}
	for at, want := range map[time.Time]string{t0.Add(5 * time.Minute): "k1", act: "k2", act3: "k3"} {
		if k, _ := storage.SigningKeyAt(ks, at); k.ID != want {
			t.Fatalf("signing key at %s after a second rotation: %q, want %q", at.Sub(t0), k.ID, want)
		}
	}
	ks, err = s.SigningKeys(ctx, act.Add(48*time.Hour))
	ok(t, err, "SigningKeys")
	if !slices.Equal(keyIDs(ks), []string{"k3", "k2"}) {
		t.Fatalf("once k1's publication ended: %v", keyIDs(ks))
	}
}

func testSigningKeysConcurrent(t *testing.T, s storage.Store) {
	ctx := context.Background()
	const n = 8
	errs := together(n, func(i int) error {
		return s.AddSigningKey(ctx, newKey(fmt.Sprintf("k%d", i), t0), false, time.Time{})
	})
	if m := tally(errs); m["nil"] != 1 || m["conflict"] != n-1 {
		t.Fatalf("%d processes creating the first key: %v, want 1 nil and %d ErrConflict", n, m, n-1)
	}
	ks, err := s.SigningKeys(ctx, t0)
	ok(t, err, "SigningKeys")
	if len(ks) != 1 {
		t.Fatalf("SigningKeys: %v", keyIDs(ks))
	}
}

func testSettings(t *testing.T, s storage.Store) {
	ctx := context.Background()
	_, err := s.Setting(ctx, "token-key")
	isErr(t, err, storage.ErrNotFound, "Setting before any value")
	got, err := s.PutSettingIfAbsent(ctx, "token-key", []byte("first"))
	ok(t, err, "PutSettingIfAbsent")
	if string(got) != "first" {
		t.Fatalf("PutSettingIfAbsent first = %q", got)
	}
	got, err = s.PutSettingIfAbsent(ctx, "token-key", []byte("second"))
	ok(t, err, "PutSettingIfAbsent")
	if string(got) != "first" {
		t.Fatalf("PutSettingIfAbsent second = %q, want the first writer's value", got)
	}
	got, err = s.Setting(ctx, "token-key")
	ok(t, err, "Setting")
	if string(got) != "first" {
		t.Fatalf("Setting = %q, want the stored value", got)
	}
	got, err = s.PutSettingIfAbsent(ctx, "other", []byte{0, 255})
	ok(t, err, "PutSettingIfAbsent other")
	if string(got) != "\x00\xff" {
		t.Fatalf("binary setting = %x", got)
	}

	const n = 8
	vals := make([][]byte, n)
	errs := together(n, func(i int) error {
		var err error
		vals[i], err = s.PutSettingIfAbsent(ctx, "race", []byte(fmt.Sprintf("v%d", i)))
		return err
	})
	if m := tally(errs); m["nil"] != n {
		t.Fatalf("concurrent PutSettingIfAbsent: %v", m)
	}
	for i := range n {
		if string(vals[i]) != string(vals[0]) {
			t.Fatalf("concurrent PutSettingIfAbsent returned different values: %q", vals)
		}
	}
}

func testAudit(t *testing.T, s storage.Store) {
	ctx := context.Background()
	evs, err := s.ListAudit(ctx, storage.AuditFilter{})
	ok(t, err, "ListAudit")
	if len(evs) != 0 {
		t.Fatalf("ListAudit on empty store: %+v", evs)
	}
	in := []storage.AuditEvent{
		{Time: t0, Type: "login.password_ok", UserID: "u1", Username: "alice", ClientID: "c1", ClientIP: "192.0.2.1",
			RequestID: "r1", Detail: `{"k":"v"}`},
		{Time: t0.Add(time.Minute), Type: "login.totp_failed", UserID: "u2", Username: "bob", ClientIP: "2001:db8::1"},
		{Time: t0.Add(2 * time.Minute), Type: "login.done", UserID: "u1", Username: "alice"},
		// Out of time order: the trail is ordered by id, not by time.
		{Time: t0.Add(30 * time.Second), Type: "user.locked", UserID: "u1"},
		{Time: t0.Add(3 * time.Minute), Type: "keys.rotated"},
	}
	for _, e := range in {
		e.ID = 999 // ignored: the store assigns ids
		ok(t, s.AppendAudit(ctx, e), "AppendAudit")
	}
	all, err := s.ListAudit(ctx, storage.AuditFilter{})
	ok(t, err, "ListAudit")
	if len(all) != len(in) {
		t.Fatalf("ListAudit: %d events, want %d", len(all), len(in))
	}
	for i := range all {
		if i > 0 && all[i].ID <= all[i-1].ID {
			t.Fatalf("ids not increasing: %d then %d", all[i-1].ID, all[i].ID)
		}
		want := in[i]
		want.ID = all[i].ID
		same(t, fmt.Sprintf("event %d", i), all[i], want)
	}
	types := func(evs []storage.AuditEvent) []string {
		var ts []string
		for _, e := range evs {
			ts = append(ts, e.Type)
		}
		return ts
	}
	evs, err = s.ListAudit(ctx, storage.AuditFilter{UserID: "u1"})
	ok(t, err, "ListAudit by user")
	if got := types(evs); !slices.Equal(got, []string{"login.password_ok", "login.done", "user.locked"}) {
		t.Fatalf("ListAudit by user: %v", got)
	}
	evs, err = s.ListAudit(ctx, storage.AuditFilter{Since: t0.Add(time.Minute)})
	ok(t, err, "ListAudit since")
	if got := types(evs); !slices.Equal(got, []string{"login.totp_failed", "login.done", "keys.rotated"}) {
		t.Fatalf("ListAudit since (inclusive): %v", got)
	}
	evs, err = s.ListAudit(ctx, storage.AuditFilter{Limit: 2})
	ok(t, err, "ListAudit limit")
	if got := types(evs); !slices.Equal(got, []string{"login.password_ok", "login.totp_failed"}) {
		t.Fatalf("ListAudit limit: %v", got)
	}
	evs, err = s.ListAudit(ctx, storage.AuditFilter{UserID: "u1", Since: t0.Add(time.Second), Limit: 1})
	ok(t, err, "ListAudit combined")
	if got := types(evs); !slices.Equal(got, []string{"login.done"}) {
		t.Fatalf("ListAudit combined filter: %v", got)
	}
	// Newest first: the latest events of a user, however many older ones
	// an attacker's failures left (the account page's recent events).
	evs, err = s.ListAudit(ctx, storage.AuditFilter{UserID: "u1", Limit: 2, Newest: true})
	ok(t, err, "ListAudit newest")
	if got := types(evs); !slices.Equal(got, []string{"user.locked", "login.done"}) {
		t.Fatalf("ListAudit newest first: %v", got)
	}
}

// testAuditRetention: DeleteAuditBefore deletes exactly the events older
// than the cutoff (whatever their order of insertion), keeps the others
// and their ids, and later appends continue after the highest id.
func testAuditRetention(t *testing.T, s storage.Store) {
	ctx := context.Background()
	for _, e := range []storage.AuditEvent{
		{Time: t0.Add(-3 * time.Hour), Type: "old-1"},
		{Time: t0, Type: "at-cutoff"},
		{Time: t0.Add(-2 * time.Hour), Type: "old-2"},
		{Time: t0.Add(-time.Second), Type: "old-3"},
		{Time: t0.Add(time.Hour), Type: "new"},
	} {
		ok(t, s.AppendAudit(ctx, e), "AppendAudit")
	}
	before, err := s.ListAudit(ctx, storage.AuditFilter{})
	ok(t, err, "ListAudit")
	if n, err := s.DeleteAuditBefore(ctx, time.Time{}); err != nil || n != 0 {
		t.Fatalf("DeleteAuditBefore(zero time) = %d, %v; want 0", n, err)
	}
	n, err := s.DeleteAuditBefore(ctx, t0)
	ok(t, err, "DeleteAuditBefore")
	if n != 3 {
		t.Fatalf("DeleteAuditBefore(t0) deleted %d events, want 3", n)
	}
	after, err := s.ListAudit(ctx, storage.AuditFilter{})
	ok(t, err, "ListAudit")
	if len(after) != 2 || after[0].Type != "at-cutoff" || after[1].Type != "new" ||
		after[0].ID != before[1].ID || after[1].ID != before[4].ID {
		t.Fatalf("after DeleteAuditBefore(t0): %+v", after)
	}
	if n, err := s.DeleteAuditBefore(ctx, t0); err != nil || n != 0 {
		t.Fatalf("second DeleteAuditBefore(t0) = %d, %v; want 0", n, err)
	}
	ok(t, s.AppendAudit(ctx, storage.AuditEvent{Time: t0, Type: "later"}), "AppendAudit")
	all, err := s.ListAudit(ctx, storage.AuditFilter{})
	ok(t, err, "ListAudit")
	if len(all) != 3 || all[2].Type != "later" || all[2].ID <= before[4].ID {
		t.Fatalf("append after deletion: %+v (highest id before %d)", all, before[4].ID)
	}
	// GC leaves the trail alone, however old its events.
	if _, err := s.GC(ctx, t0.Add(1000*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if evs, _ := s.ListAudit(ctx, storage.AuditFilter{}); len(evs) != 3 {
		t.Fatalf("GC deleted audit events: %d left", len(evs))
	}
}

// ---------------------------------------------------------------------------
// GC and Ping

func testGC(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	live := now.Add(10 * time.Hour)

	// Deletable at now: 5 rows.
	old := newAuthRequest("ar-old", now.Add(-3*time.Hour))
	old.ExpiresAt = now.Add(-2 * time.Hour)
	ok(t, s.CreateAuthRequest(ctx, old), "CreateAuthRequest")
	expAT := newAccessToken("at-exp", "u1", "c", now.Add(-2*time.Hour))
	expAT.ExpiresAt = now
	ok(t, s.CreateAccessToken(ctx, expAT), "CreateAccessToken")
	expRT := newRefreshToken("rt-exp", "fam-exp", "u1", "c", now.Add(-48*time.Hour))
	expRT.ExpiresAt = now.Add(-time.Second)
	ok(t, s.CreateRefreshToken(ctx, expRT, storage.AccessToken{}), "CreateRefreshToken")
	ok(t, s.CreateSession(ctx, storage.Session{IDHash: hash("s-exp"), UserID: "u1", CreatedAt: now.Add(-time.Hour),
		ExpiresAt: now}), "CreateSession")
	ok(t, s.AddSigningKey(ctx, newKey("k-old", now.Add(-48*time.Hour)), false, time.Time{}), "AddSigningKey")
	ok(t, s.AddSigningKey(ctx, newKey("k-mid", now.Add(-24*time.Hour)), true, now.Add(-time.Second)), "AddSigningKey")

	// An expired request that never issued a code is garbage at once
	// (an /authorize flood must not linger): the 6th deletable row.
	unused := newAuthRequest("ar-unused", now.Add(-time.Hour))
	unused.ExpiresAt = now.Add(-30 * time.Minute)
	ok(t, s.CreateAuthRequest(ctx, unused), "CreateAuthRequest")

	// Kept at now.
	recent := newAuthRequest("ar-recent", now.Add(-time.Hour))
	recent.ExpiresAt = now.Add(-30 * time.Minute) // expired, but issued a code: an hour of grace for reuse detection
	ok(t, s.CreateAuthRequest(ctx, recent), "CreateAuthRequest")
	ok(t, s.CompleteFromSession(ctx, "ar-recent", storage.Session{UserID: "u1", AuthTime: now.Add(-time.Hour)}, now.Add(-time.Hour)), "CompleteFromSession")
	ok(t, s.SaveAuthCode(ctx, "ar-recent", hash("code-recent"), now.Add(-time.Hour), now.Add(-50*time.Minute)), "SaveAuthCode")
	liveAR := newAuthRequest("ar-live", now)
	liveAR.ExpiresAt = live
	ok(t, s.CreateAuthRequest(ctx, liveAR), "CreateAuthRequest")
	liveAT := newAccessToken("at-live", "u1", "c", now)
	liveAT.ExpiresAt = live
	ok(t, s.CreateAccessToken(ctx, liveAT), "CreateAccessToken")
	liveRT := newRefreshToken("rt-live", "fam-live", "u1", "c", now)
	liveRT.ExpiresAt = live
	ok(t, s.CreateRefreshToken(ctx, liveRT, storage.AccessToken{}), "CreateRefreshToken")
	ok(t, s.CreateSession(ctx, storage.Session{IDHash: hash("s-live"), UserID: "u1", ExpiresAt: live}), "CreateSession")
	ok(t, s.AddSigningKey(ctx, newKey("k-new", now.Add(-time.Hour)), true, live), "AddSigningKey")
	for i := range 3 {
		ok(t, s.AppendAudit(ctx, storage.AuditEvent{Time: now.Add(-time.Duration(i) * 24 * time.Hour), Type: "old"}), "AppendAudit")
	}

	n, err := s.GC(ctx, now)
	ok(t, err, "GC")
	if n != 6 {
		t.Fatalf("GC deleted %d rows, want 6 (two auth requests, access token, refresh token, session, signing key)", n)
	}
	if _, err := s.AuthRequestByID(ctx, "ar-unused", time.Time{}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired auth request without a code survived GC: %v", err)
	}
	if _, err := s.AuthRequestByID(ctx, "ar-recent", time.Time{}); err != nil {
		t.Fatalf("expired auth request with a code removed before its grace: %v", err)
	}
	if _, err := s.RefreshTokenByID(ctx, "rt-exp"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired refresh token survived GC: %v", err)
	}
	ks, _ := s.SigningKeys(ctx, now.Add(-2*time.Hour))
	if !slices.Equal(keyIDs(ks), []string{"k-new", "k-mid"}) {
		t.Fatalf("signing keys after GC (listed as of before the expiry): %v", keyIDs(ks))
	}
	accessLive(t, s, "at-live", now)
	refreshLive(t, s, liveRT, now)
	if _, err := s.SessionByHash(ctx, hash("s-live"), now); err != nil {
		t.Fatalf("live session removed by GC: %v", err)
	}
	if _, err := s.AuthRequestByID(ctx, "ar-live", now); err != nil {
		t.Fatalf("live auth request removed by GC: %v", err)
	}
	if n, err := s.GC(ctx, now); err != nil || n != 0 {
		t.Fatalf("second GC: %d, %v; want 0", n, err)
	}
	// The recently expired auth request goes once its hour of grace ends.
	n, err = s.GC(ctx, recent.ExpiresAt.Add(time.Hour))
	ok(t, err, "GC")
	if n != 1 {
		t.Fatalf("GC after the grace hour deleted %d rows, want 1", n)
	}
	evs, err := s.ListAudit(ctx, storage.AuditFilter{})
	ok(t, err, "ListAudit")
	if len(evs) != 3 {
		t.Fatalf("GC removed audit events: %d left", len(evs))
	}
}

func testPingClose(t *testing.T, s storage.Store) {
	ok(t, s.Ping(context.Background()), "Ping")
	ok(t, s.Close(), "Close")
	if err := s.Ping(context.Background()); err == nil {
		t.Fatalf("Ping after Close succeeded")
	}
}

// testTokensAfterRevocation: the token endpoint redeems a code in one
// transaction and stores its tokens in the next. A revocation that lands
// in between (the code reused by a racing request, the user's sessions
// ended by an operator) must reach the tokens not yet stored: storing them
// is refused with ErrReused and nothing is stored (found by a review: the
// winner of a reused code kept live tokens).
func testTokensAfterRevocation(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	now := t0
	redeem := func(id string) {
		t.Helper()
		doneRequest(t, s, id, "u1", now)
		ok(t, s.SaveAuthCode(ctx, id, hash("code-"+id), now, now.Add(time.Minute)), "SaveAuthCode %s", id)
		_, err := s.ConsumeAuthCode(ctx, hash("code-"+id), now)
		ok(t, err, "ConsumeAuthCode %s", id)
	}
	refused := func(id string) {
		t.Helper()
		at := newAccessToken("at-"+id, "u1", "client-a", now)
		at.AuthRequestID = id
		isErr(t, s.CreateAccessToken(ctx, at), storage.ErrReused, "CreateAccessToken for %s after the revocation", id)
		rt := newRefreshToken("rt-"+id, "", "u1", "client-a", now)
		rt.AuthRequestID = id
		at2 := newAccessToken("at2-"+id, "u1", "client-a", now)
		at2.AuthRequestID, at2.RefreshTokenID = id, rt.ID
		isErr(t, s.CreateRefreshToken(ctx, rt, at2), storage.ErrReused, "CreateRefreshToken for %s after the revocation", id)
		for _, tok := range []string{at.ID, at2.ID} {
			_, err := s.AccessTokenByID(ctx, tok, now)
			isErr(t, err, storage.ErrNotFound, "access token %s stored although refused", tok)
		}
	}

	// The code reused before the winner stored its tokens.
	redeem("ar-reused")
	_, err := s.ConsumeAuthCode(ctx, hash("code-ar-reused"), now)
	isErr(t, err, storage.ErrReused, "the racing second redemption")
	refused("ar-reused")

	// The user's sessions ended (for every client, then for one).
	redeem("ar-ended")
	_, err = s.EndUserSessions(ctx, "u1", "", now)
	ok(t, err, "EndUserSessions")
	refused("ar-ended")
	redeem("ar-client")
	_, err = s.EndUserSessions(ctx, "u1", "client-a", now)
	ok(t, err, "EndUserSessions for client-a")
	refused("ar-client")

	// The browser's session ended (logout) or retired for another user's
	// (ReplaceSession): the sign-in completed through it must not give
	// tokens that outlive it. An offline_access grant is refused too: its
	// tokens would survive the logout, but one whose exchange races the
	// logout is refused on the safe side (the client signs in again).
	throughSession := func(id, user, session string, scopes ...string) {
		t.Helper()
		a := newAuthRequest(id, now)
		a.Scopes = append(a.Scopes, scopes...)
		ok(t, s.CreateAuthRequest(ctx, a), "CreateAuthRequest %s", id)
		sess := storage.Session{IDHash: hash(session), UserID: user, AuthTime: now, AMR: []string{"pwd", "otp", "mfa"},
			ACR: "urn:totp-idp:mfa", CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}
		if _, err := s.SessionByHash(ctx, sess.IDHash, now); errors.Is(err, storage.ErrNotFound) {
			ok(t, s.CreateSession(ctx, sess), "CreateSession %s", session)
		}
		ok(t, s.CompleteFromSession(ctx, id, sess, now), "CompleteFromSession %s", id)
		ok(t, s.SaveAuthCode(ctx, id, hash("code-"+id), now, now.Add(time.Minute)), "SaveAuthCode %s", id)
		_, err := s.ConsumeAuthCode(ctx, hash("code-"+id), now)
		ok(t, err, "ConsumeAuthCode %s", id)
	}
	throughSession("ar-logout", "u1", "sess-logout")
	throughSession("ar-offline", "u1", "sess-logout", "offline_access")
	_, err = s.EndSession(ctx, hash("sess-logout"), now)
	ok(t, err, "EndSession")
	refused("ar-logout")
	refused("ar-offline")

	addUser(t, s, "u2")
	throughSession("ar-replaced", "u1", "sess-old")
	ok(t, s.CreateSession(ctx, storage.Session{IDHash: hash("sess-new"), UserID: "u2", AuthTime: now,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}), "CreateSession sess-new")
	ok(t, s.ReplaceSession(ctx, hash("sess-old"), hash("sess-new"), now), "ReplaceSession for another user")
	refused("ar-replaced")

	// A request not revoked stores its tokens as before.
	redeem("ar-fine")
	at := newAccessToken("at-fine", "u1", "client-a", now)
	at.AuthRequestID = "ar-fine"
	ok(t, s.CreateAccessToken(ctx, at), "CreateAccessToken of an untouched request")
}

// testCodeAfterCancel: the login handler reads a session and then
// completes the request from it; the callback reads a done request and then
// saves its code. A logout or an operator's ending that lands between the
// read and the write must win: no request completes from an ended session,
// and a cancelled sign-in gets no code (found by a review: the code was
// saved and redeemed after the logout).
func testCodeAfterCancel(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	now := t0
	session := func(name string) storage.Session { t.Helper(); return accountSession(t, s, name, "u1", now) }
	stage := func(id string) string {
		t.Helper()
		a, err := s.AuthRequestByID(ctx, id, now)
		ok(t, err, "AuthRequestByID %s", id)
		return a.Stage
	}

	// The session ended after the handler read it.
	gone := session("gone")
	addAuthRequest(t, s, "ar-gone", now)
	_, err := s.EndSession(ctx, gone.IDHash, now)
	ok(t, err, "EndSession")
	isErr(t, s.CompleteFromSession(ctx, "ar-gone", gone, now), storage.ErrNotFound, "CompleteFromSession of an ended session")
	if st := stage("ar-gone"); st != storage.StageCreated {
		t.Fatalf("request completed from an ended session: stage %s", st)
	}
	// An expired session, and an expired request, complete nothing either.
	late := session("late")
	isErr(t, s.CompleteFromSession(ctx, "ar-gone", late, late.ExpiresAt), storage.ErrNotFound, "CompleteFromSession of an expired session")
	expired := newAuthRequest("ar-expired", now)
	ok(t, s.CreateAuthRequest(ctx, expired), "CreateAuthRequest")
	isErr(t, s.CompleteFromSession(ctx, "ar-expired", late, expired.ExpiresAt), storage.ErrNotFound, "CompleteFromSession of an expired request")

	// Done through a session, then the logout, then the callback's code.
	live := session("live")
	addAuthRequest(t, s, "ar-logout", now)
	ok(t, s.CompleteFromSession(ctx, "ar-logout", live, now), "CompleteFromSession")
	_, err = s.EndSession(ctx, live.IDHash, now)
	ok(t, err, "EndSession")
	isErr(t, s.SaveAuthCode(ctx, "ar-logout", hash("code-logout"), now, now.Add(time.Minute)), storage.ErrNotFound,
		"SaveAuthCode after the logout")
	_, err = s.ConsumeAuthCode(ctx, hash("code-logout"), now)
	isErr(t, err, storage.ErrNotFound, "ConsumeAuthCode of a code saved after the logout")

	// Done, then the operator ends the user's sessions, then the code.
	doneRequest(t, s, "ar-ended", "u1", now)
	_, err = s.EndUserSessions(ctx, "u1", "", now)
	ok(t, err, "EndUserSessions")
	isErr(t, s.SaveAuthCode(ctx, "ar-ended", hash("code-ended"), now, now.Add(time.Minute)), storage.ErrNotFound,
		"SaveAuthCode after EndUserSessions")

	// A step whose clock reads a second before the ending's (the same
	// host between two seconds, or another replica): the cancelled request
	// is dead for it too (found by a review: cancelling set the expiry to
	// the ending's now, which an earlier now still saw ahead).
	behind := now.Add(-time.Second)
	doneRequest(t, s, "ar-skew-save", "u1", behind)
	doneRequest(t, s, "ar-skew-code", "u1", behind)
	ok(t, s.SaveAuthCode(ctx, "ar-skew-code", hash("code-skew"), behind, behind.Add(time.Minute)), "SaveAuthCode before the ending")
	_, err = s.EndUserSessions(ctx, "u1", "", now)
	ok(t, err, "EndUserSessions")
	_, err = s.AuthRequestByID(ctx, "ar-skew-save", behind)
	isErr(t, err, storage.ErrNotFound, "AuthRequestByID of a cancelled request on a clock behind")
	isErr(t, s.SaveAuthCode(ctx, "ar-skew-save", hash("code-skew-save"), behind, behind.Add(time.Minute)), storage.ErrNotFound,
		"SaveAuthCode of a cancelled request on a clock behind")
	_, err = s.ConsumeAuthCode(ctx, hash("code-skew"), behind)
	isErr(t, err, storage.ErrNotFound, "ConsumeAuthCode of a cancelled request's code on a clock behind")

	// A code saved in the request's last minute outlives the request; an
	// ending between the two expiries still reaches it (third review, N1a:
	// the ending skipped expired requests and the code gave live tokens).
	lastMinute := doneRequest(t, s, "ar-late", "u1", now)
	end := lastMinute.ExpiresAt
	ok(t, s.SaveAuthCode(ctx, "ar-late", hash("code-late"), end.Add(-30*time.Second), end.Add(30*time.Second)), "SaveAuthCode in the last minute")
	ended, err := s.EndUserSessions(ctx, "u1", "", end.Add(5*time.Second))
	ok(t, err, "EndUserSessions after the request's expiry")
	if ended.SignIns != 1 {
		t.Errorf("EndUserSessions counted %d sign-ins, want 1 (the live code)", ended.SignIns)
	}
	_, err = s.ConsumeAuthCode(ctx, hash("code-late"), end.Add(10*time.Second))
	isErr(t, err, storage.ErrNotFound, "ConsumeAuthCode of a code the ending cancelled")
	// A request expired on the ending's clock but live on a step's clock
	// a second behind (N1b): the ending cancels it all the same.
	edge := doneRequest(t, s, "ar-edge", "u1", now)
	_, err = s.EndUserSessions(ctx, "u1", "", edge.ExpiresAt)
	ok(t, err, "EndUserSessions at the request's expiry")
	isErr(t, s.SaveAuthCode(ctx, "ar-edge", hash("code-edge"), edge.ExpiresAt.Add(-time.Second), edge.ExpiresAt.Add(time.Minute)),
		storage.ErrNotFound, "SaveAuthCode a second behind the ending")

	// Done, and the request expired before the callback.
	a := doneRequest(t, s, "ar-slow", "u1", now)
	isErr(t, s.SaveAuthCode(ctx, "ar-slow", hash("code-slow"), a.ExpiresAt, a.ExpiresAt.Add(time.Minute)), storage.ErrNotFound,
		"SaveAuthCode on an expired request")
	// And one in time saves its code as before.
	ok(t, s.SaveAuthCode(ctx, "ar-slow", hash("code-slow"), now, now.Add(time.Minute)), "SaveAuthCode in time")
}

// testTokensFollowReplace: tokens take their SSO session from the rows
// their insert reads in its own transaction, not from the caller's
// earlier read. A login in the same browser that replaced session S1 by S2
// between a code's redemption (or a refresh token's read) and the insert
// must not leave tokens tagged with the gone S1, which no logout reaches
// (found by a review).
func testTokensFollowReplace(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	now := t0
	s1, s2 := accountSession(t, s, "s1", "u1", now), accountSession(t, s, "s2", "u1", now)

	// A code redeemed through S1, then S1 replaced by S2, then the tokens
	// stored with the S1 the token endpoint read at redemption.
	addAuthRequest(t, s, "ar", now)
	ok(t, s.CompleteFromSession(ctx, "ar", s1, now), "CompleteFromSession")
	ok(t, s.SaveAuthCode(ctx, "ar", hash("code"), now, now.Add(time.Minute)), "SaveAuthCode")
	redeemed, err := s.ConsumeAuthCode(ctx, hash("code"), now)
	ok(t, err, "ConsumeAuthCode")
	// And a refresh token issued through S1 earlier, rotated after the
	// replacement by a caller that read it before.
	rt := newRefreshToken("rt-old", "fam", "u1", "client-a", now)
	rt.Scopes, rt.SessionHash = []string{"openid"}, s1.IDHash
	ok(t, s.CreateRefreshToken(ctx, rt, storage.AccessToken{}), "CreateRefreshToken")

	ok(t, s.ReplaceSession(ctx, s1.IDHash, s2.IDHash, now), "ReplaceSession for the same user")

	at := newAccessToken("at-code", "u1", "client-a", now)
	at.AuthRequestID, at.SessionHash = "ar", redeemed.SessionHash
	ok(t, s.CreateAccessToken(ctx, at), "CreateAccessToken")
	next := newRefreshToken("rt-next", "fam", "u1", "client-a", now)
	next.Scopes, next.SessionHash = []string{"openid"}, s1.IDHash
	nextAT := newAccessToken("at-next", "u1", "client-a", now)
	nextAT.SessionHash = s1.IDHash
	ok(t, s.RotateRefreshToken(ctx, rt.TokenHash, next, nextAT, now), "RotateRefreshToken")

	// The logout of the browser's session now reaches all of them.
	_, err = s.EndSession(ctx, s2.IDHash, now)
	ok(t, err, "EndSession")
	accessGone(t, s, at.ID, now)
	accessGone(t, s, nextAT.ID, now)
	refreshGone(t, s, next, now)
}
