package conformance

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

// accountSession creates a live SSO session of user, named name, opened
// at now from a fixed address and a user agent naming it.
func accountSession(t *testing.T, s storage.Store, name, user string, now time.Time) storage.Session {
	t.Helper()
	sess := storage.Session{IDHash: hash(name), UserID: user, AuthTime: now, AMR: []string{"pwd", "otp", "mfa"}, ACR: "urn:mfa",
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour), ClientIP: "192.0.2.7", UserAgent: "Agent/" + name,
		VerifiedAt: now}
	ok(t, s.CreateSession(context.Background(), sess), "CreateSession %s", name)
	return sess
}

func totpCounter(t *testing.T, s storage.Store, user string) storage.AttemptState {
	t.Helper()
	states, err := s.AttemptStates(context.Background(), user)
	ok(t, err, "AttemptStates")
	for _, st := range states {
		if st.Factor == storage.FactorTOTP {
			return st
		}
	}
	return storage.AttemptState{}
}

// testSetPassword: a new password ends what the old one may have opened
// (every other session, every device, every sign-in in progress, every
// token not issued through the kept session, offline grants too) and
// resets the second factor's counter, in one step (issue 12).
func testSetPassword(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	keep := accountSession(t, s, "keep", "u1", now)
	other := accountSession(t, s, "other", "u1", now)
	bystander := accountSession(t, s, "bystander", "u2", now)
	ok(t, s.RememberDevice(ctx, storage.Device{IDHash: hash("dev"), UserID: "u1", CreatedAt: now, LastUsedAt: now,
		ExpiresAt: now.Add(time.Hour)}, nil, 5, now), "RememberDevice")
	// The device of the browser making the change stays (review A-F4).
	ok(t, s.RememberDevice(ctx, storage.Device{IDHash: hash("my-dev"), UserID: "u1", CreatedAt: now, LastUsedAt: now,
		ExpiresAt: now.Add(time.Hour)}, nil, 5, now), "RememberDevice mine")
	tokens := func(name string, sess []byte, scopes ...string) (storage.AccessToken, storage.RefreshToken) {
		rt := newRefreshToken("rt-"+name, "fam-"+name, "u1", "client-a", now)
		rt.Scopes, rt.SessionHash = append([]string{"openid"}, scopes...), sess
		at := newAccessToken("at-"+name, "u1", "client-a", now)
		at.SessionHash = sess
		ok(t, s.CreateRefreshToken(ctx, rt, at), "CreateRefreshToken %s", name)
		return at, rt
	}
	keptAT, keptRT := tokens("kept", keep.IDHash)
	otherAT, otherRT := tokens("other", other.IDHash)
	offAT, offRT := tokens("offline", other.IDHash, "offline_access")
	bareAT, bareRT := tokens("bare", nil)
	// A sign-in in progress with the old password, at its second step.
	doneRequest(t, s, "inflight", "u1", now)
	ok(t, s.SaveAuthCode(ctx, "inflight", hash("code-inflight"), now, now.Add(time.Minute)), "SaveAuthCode")
	// The second factor's failures and budget, spent by someone with the
	// old password.
	for range 3 {
		c, err := s.ClaimAttempt(ctx, "u1", storage.FactorTOTP, now, policy)
		ok(t, err, "ClaimAttempt")
		if !c.Allowed {
			t.Fatal("claim refused")
		}
	}
	if st := totpCounter(t, s, "u1"); st.Failures != 3 {
		t.Fatalf("TOTP counter before: %+v", st)
	}

	later := now.Add(time.Minute)
	e, err := s.SetPassword(ctx, "u1", storage.PasswordChange{Hash: "$argon2id$new", Keep: keep.IDHash, KeepDevice: hash("my-dev")}, later)
	ok(t, err, "SetPassword")
	if e.Sessions != 1 || e.Devices != 1 || e.SignIns != 1 || e.Tokens != 6 {
		t.Errorf("SetPassword ended %+v, want 1 session, 1 device, 1 sign-in, 6 tokens", e)
	}
	u, err := s.UserByID(ctx, "u1")
	ok(t, err, "UserByID")
	if u.PasswordHash != "$argon2id$new" || !u.PasswordChangedAt.Equal(later) || u.MustChangePassword {
		t.Fatalf("after SetPassword: %+v", u)
	}
	if _, err := s.SessionByHash(ctx, keep.IDHash, later); err != nil {
		t.Fatalf("the kept session ended: %v", err)
	}
	_, err = s.SessionByHash(ctx, other.IDHash, later)
	isErr(t, err, storage.ErrNotFound, "the other session after SetPassword")
	if _, err := s.SessionByHash(ctx, bystander.IDHash, later); err != nil {
		t.Fatalf("another user's session ended: %v", err)
	}
	if d, _ := s.Devices(ctx, "u1", later); len(d) != 1 || string(d[0].IDHash) != string(hash("my-dev")) {
		t.Errorf("%d devices left, want only the changing browser's", len(d))
	}
	accessLive(t, s, keptAT.ID, later)
	refreshLive(t, s, keptRT, later)
	for _, at := range []storage.AccessToken{otherAT, offAT, bareAT} {
		accessGone(t, s, at.ID, later)
	}
	for _, rt := range []storage.RefreshToken{otherRT, offRT, bareRT} {
		refreshGone(t, s, rt, later)
	}
	_, err = s.ConsumeAuthCode(ctx, hash("code-inflight"), later)
	isErr(t, err, storage.ErrNotFound, "the code of a sign-in in progress with the old password")
	if st := totpCounter(t, s, "u1"); st.Failures != 0 || st.BudgetLevel != 0 || st.BudgetSpent || !st.LockedUntil.IsZero() {
		t.Errorf("TOTP counter after SetPassword: %+v", st)
	}

	// The operator's reset: no session kept, a new password required.
	e, err = s.SetPassword(ctx, "u1", storage.PasswordChange{Hash: "$argon2id$temp", MustChange: true}, later)
	ok(t, err, "SetPassword --must-change")
	if e.Sessions != 1 || e.Tokens != 2 {
		t.Errorf("SetPassword without keep ended %+v, want the kept session and its 2 tokens", e)
	}
	if u, _ := s.UserByID(ctx, "u1"); !u.MustChangePassword {
		t.Fatal("MustChangePassword not set")
	}
	// The user signs in (both factors, a session opened) and must choose
	// a new password before any code; choosing it keeps that session and
	// that sign-in, and ends another one in progress.
	mine := accountSession(t, s, "after-reset", "u1", later)
	addAuthRequest(t, s, "must-change", later)
	ok(t, s.CompleteFromSession(ctx, "must-change", mine, later), "CompleteFromSession")
	isErr(t, s.SaveAuthCode(ctx, "must-change", hash("code-mc"), later, later.Add(time.Minute)), storage.ErrWrongState,
		"SaveAuthCode while the password must change")
	doneRequest(t, s, "elsewhere", "u1", later)
	// The user's change names the hash it replaces: an operator's reset in
	// between wins, and so does a logout of the kept session.
	_, err = s.SetPassword(ctx, "u1", storage.PasswordChange{Hash: "$argon2id$mine", Keep: mine.IDHash, OldHash: "$argon2id$stale"}, later)
	isErr(t, err, storage.ErrWrongState, "SetPassword over a hash that changed meanwhile")
	gone := accountSession(t, s, "gone-before", "u1", later)
	_, err = s.EndSession(ctx, gone.IDHash, later)
	ok(t, err, "EndSession")
	_, err = s.SetPassword(ctx, "u1", storage.PasswordChange{Hash: "$argon2id$mine", Keep: gone.IDHash, OldHash: "$argon2id$temp"}, later)
	isErr(t, err, storage.ErrWrongState, "SetPassword keeping a session that ended meanwhile")
	e, err = s.SetPassword(ctx, "u1", storage.PasswordChange{Hash: "$argon2id$chosen", Keep: mine.IDHash, OldHash: "$argon2id$temp"}, later)
	ok(t, err, "SetPassword by the user")
	if e.SignIns != 1 || e.Sessions != 0 {
		t.Errorf("the user's new password ended %+v, want only the other sign-in", e)
	}
	ok(t, s.SaveAuthCode(ctx, "must-change", hash("code-mc"), later, later.Add(time.Minute)), "SaveAuthCode after the change")
	isErr(t, s.SaveAuthCode(ctx, "elsewhere", hash("code-else"), later, later.Add(time.Minute)), storage.ErrNotFound,
		"SaveAuthCode of the other sign-in")

	_, err = s.SetPassword(ctx, "nobody", storage.PasswordChange{Hash: "$argon2id$x"}, later)
	isErr(t, err, storage.ErrNotFound, "SetPassword unknown user")
}

// testSetDisabled: disabling ends everything and gets no code; enabling
// lets the account sign in again.
func testSetDisabled(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	sess := accountSession(t, s, "s", "u1", now)
	at := newAccessToken("at", "u1", "client-a", now)
	at.SessionHash = sess.IDHash
	ok(t, s.CreateAccessToken(ctx, at), "CreateAccessToken")
	doneRequest(t, s, "before", "u1", now)

	e, err := s.SetDisabled(ctx, "u1", true, now)
	ok(t, err, "SetDisabled")
	if e.Sessions != 1 || e.Tokens != 1 || e.SignIns != 1 {
		t.Errorf("disabling ended %+v", e)
	}
	if u, _ := s.UserByID(ctx, "u1"); !u.DisabledAt.Equal(now) {
		t.Fatalf("DisabledAt %v, want %v", u.DisabledAt, now)
	}
	accessGone(t, s, at.ID, now)
	// Disabling again keeps the first time (review of issue 12, B-F7).
	_, err = s.SetDisabled(ctx, "u1", true, now.Add(time.Minute))
	ok(t, err, "SetDisabled again")
	if u, _ := s.UserByID(ctx, "u1"); !u.DisabledAt.Equal(now) {
		t.Errorf("DisabledAt after disabling again %v, want the first %v", u.DisabledAt, now)
	}
	doneRequest(t, s, "while", "u1", now)
	isErr(t, s.SaveAuthCode(ctx, "while", hash("code-while"), now, now.Add(time.Minute)), storage.ErrWrongState,
		"SaveAuthCode for a disabled account")

	// Nor may it plant an authenticator with its password alone (review of
	// issue 12, F2).
	addUser(t, s, "fresh")
	_, err = s.SetDisabled(ctx, "fresh", true, now)
	ok(t, err, "SetDisabled fresh")
	passwordOK(t, s, "enr", "fresh", now)
	ok(t, s.SetPendingTOTP(ctx, "enr", "fresh", []byte("sealed"), false, now), "SetPendingTOTP")
	isErr(t, s.ConfirmEnrollment(ctx, "enr", storage.TOTPCredential{UserID: "fresh", Secret: []byte("sealed"), Confirmed: true, LastStep: 1},
		[][]byte{hash("rc")}, now), storage.ErrWrongState, "ConfirmEnrollment of a disabled account")
	if _, err := s.TOTPByUser(ctx, "fresh"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a disabled account enrolled an authenticator: %v", err)
	}

	e, err = s.SetDisabled(ctx, "u1", false, now)
	ok(t, err, "SetDisabled false")
	if e != (storage.Ended{SignIns: 1}) {
		t.Errorf("enabling ended %+v, want the one sign-in made while disabled", e)
	}
	if u, _ := s.UserByID(ctx, "u1"); !u.DisabledAt.IsZero() {
		t.Fatalf("DisabledAt %v after enabling", u.DisabledAt)
	}
	// A sign-in made while disabled stays dead; a new one works.
	isErr(t, s.SaveAuthCode(ctx, "while", hash("code-while"), now, now.Add(time.Minute)), storage.ErrNotFound,
		"SaveAuthCode of a sign-in made while disabled")
	doneRequest(t, s, "after", "u1", now)
	// Enabling an enabled account ends nothing: its sign-ins in progress
	// go on (review of issue 12, B-F6).
	e, err = s.SetDisabled(ctx, "u1", false, now)
	ok(t, err, "SetDisabled false on an enabled account")
	if e != (storage.Ended{}) {
		t.Errorf("enabling an enabled account ended %+v, want nothing", e)
	}
	ok(t, s.SaveAuthCode(ctx, "after", hash("code-after"), now, now.Add(time.Minute)), "SaveAuthCode once enabled")
	_, err = s.SetDisabled(ctx, "nobody", true, now)
	isErr(t, err, storage.ErrNotFound, "SetDisabled unknown user")
}

// testUpdateUser: only the fields given change.
func testUpdateUser(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	name := "Ann Other"
	ok(t, s.UpdateUser(ctx, "u1", storage.UserUpdate{Name: &name}), "UpdateUser name")
	u, _ := s.UserByID(ctx, "u1")
	if u.Name != name || u.Email != "u1@example.com" || !u.EmailVerified {
		t.Fatalf("after the name: %+v", u)
	}
	email, no := "ann@example.org", false
	ok(t, s.UpdateUser(ctx, "u1", storage.UserUpdate{Email: &email, EmailVerified: &no}), "UpdateUser e-mail")
	u, _ = s.UserByID(ctx, "u1")
	if u.Name != name || u.Email != email || u.EmailVerified {
		t.Fatalf("after the e-mail: %+v", u)
	}
	isErr(t, s.UpdateUser(ctx, "nobody", storage.UserUpdate{Name: &name}), storage.ErrNotFound, "UpdateUser unknown user")
}

// testListSessions: a user's live sessions, most recently seen first,
// with where they came from; VerifySession records a fresh second factor.
func testListSessions(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	old := accountSession(t, s, "old", "u1", now.Add(-time.Minute))
	fresh := accountSession(t, s, "fresh", "u1", now)
	accountSession(t, s, "theirs", "u2", now)
	accountSession(t, s, "gone", "u1", now.Add(-2*time.Hour)) // expired an hour ago
	list, err := s.Sessions(ctx, "u1", now)
	ok(t, err, "Sessions")
	if len(list) != 2 || string(list[0].IDHash) != string(fresh.IDHash) || string(list[1].IDHash) != string(old.IDHash) {
		t.Fatalf("Sessions: %d, want fresh then old", len(list))
	}
	if list[0].ClientIP != "192.0.2.7" || list[0].UserAgent != "Agent/fresh" || !list[0].VerifiedAt.Equal(now) {
		t.Fatalf("session fields did not round-trip: %+v", list[0])
	}
}

// testReverify: a reauthentication proves the second factor again in a
// live session: the TOTP step is single-use across sign-ins and
// reauthentications, a recovery code is consumed, the counter records a
// success, and only the session's own user can do it.
func testReverify(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte("sealed"), Confirmed: true, CreatedAt: now}), "PutTOTP")
	sess := accountSession(t, s, "s", "u1", now.Add(-time.Hour+time.Minute))
	verified := func() time.Time {
		t.Helper()
		got, err := s.SessionByHash(ctx, sess.IDHash, now)
		ok(t, err, "SessionByHash")
		return got.VerifiedAt
	}
	c, err := s.ClaimAttempt(ctx, "u1", storage.FactorTOTP, now, policy)
	ok(t, err, "ClaimAttempt")
	if !c.Allowed {
		t.Fatal("claim refused")
	}
	ok(t, s.ReverifyTOTP(ctx, sess.IDHash, "u1", 100, now), "ReverifyTOTP")
	if !verified().Equal(now) {
		t.Fatalf("VerifiedAt %v, want %v", verified(), now)
	}
	if st := totpCounter(t, s, "u1"); st.Failures != 0 {
		t.Errorf("TOTP counter after a reauthentication: %+v", st)
	}
	// The same step again, here or in a sign-in: a replay.
	isErr(t, s.ReverifyTOTP(ctx, sess.IDHash, "u1", 100, now.Add(time.Second)), storage.ErrReplay, "ReverifyTOTP same step")
	addAuthRequest(t, s, "ar", now)
	ok(t, s.PasswordVerified(ctx, "ar", "u1", now), "PasswordVerified")
	isErr(t, s.CompleteTOTP(ctx, "ar", "u1", 100, now, []string{"pwd", "otp"}, "acr"), storage.ErrReplay, "CompleteTOTP with the step a reauthentication used")
	// Another user's session, an unknown one, an expired one.
	isErr(t, s.ReverifyTOTP(ctx, sess.IDHash, "u2", 101, now), storage.ErrNotFound, "ReverifyTOTP for another user")
	isErr(t, s.ReverifyTOTP(ctx, hash("nope"), "u1", 102, now), storage.ErrNotFound, "ReverifyTOTP unknown session")
	isErr(t, s.ReverifyTOTP(ctx, sess.IDHash, "u1", 103, sess.ExpiresAt), storage.ErrNotFound, "ReverifyTOTP expired session")
	if !verified().Equal(now) {
		t.Fatal("a refused reauthentication changed VerifiedAt")
	}

	// Recovery codes: consumed once.
	_, err = s.ReplaceRecoveryCodes(ctx, "u1", [][]byte{hash("rc1"), hash("rc2")}, now)
	ok(t, err, "ReplaceRecoveryCodes")
	sess2 := accountSession(t, s, "s2", "u1", now) // ReplaceRecoveryCodes ended the first
	left, err := s.ReverifyRecovery(ctx, sess2.IDHash, "u1", hash("rc1"), now.Add(time.Minute))
	ok(t, err, "ReverifyRecovery")
	if left != 1 {
		t.Errorf("codes left %d, want 1", left)
	}
	_, err = s.ReverifyRecovery(ctx, sess2.IDHash, "u1", hash("rc1"), now.Add(time.Minute))
	isErr(t, err, storage.ErrNotFound, "ReverifyRecovery with a used code")
	_, err = s.ReverifyRecovery(ctx, sess2.IDHash, "u2", hash("rc2"), now.Add(time.Minute))
	isErr(t, err, storage.ErrNotFound, "ReverifyRecovery for another user")
	got, _ := s.SessionByHash(ctx, sess2.IDHash, now)
	if !got.VerifiedAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("VerifiedAt after ReverifyRecovery: %v", got.VerifiedAt)
	}
}

// testRenewRecoveryCodes: the user's own renewal from a live session keeps
// that session and ends the others; the old codes die.
func testRenewRecoveryCodes(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	keep := accountSession(t, s, "keep", "u1", now)
	isErr(t, second(s.RenewRecoveryCodes(ctx, "u1", [][]byte{hash("new")}, keep.IDHash, 0, now)), storage.ErrWrongState,
		"RenewRecoveryCodes without an authenticator")
	ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte("sealed"), Confirmed: true, CreatedAt: now}), "PutTOTP")
	_, err := s.ReplaceRecoveryCodes(ctx, "u1", [][]byte{hash("old")}, now)
	ok(t, err, "ReplaceRecoveryCodes")
	keep = accountSession(t, s, "keep2", "u1", now) // the operator's replacement ended the first
	other := accountSession(t, s, "other", "u1", now)
	e, err := s.RenewRecoveryCodes(ctx, "u1", [][]byte{hash("new1"), hash("new2")}, keep.IDHash, 0, now)
	ok(t, err, "RenewRecoveryCodes")
	if e.Sessions != 1 {
		t.Errorf("RenewRecoveryCodes ended %+v, want the other session", e)
	}
	if _, err := s.SessionByHash(ctx, keep.IDHash, now); err != nil {
		t.Fatalf("the kept session ended: %v", err)
	}
	_, err = s.SessionByHash(ctx, other.IDHash, now)
	isErr(t, err, storage.ErrNotFound, "the other session")
	if n, _ := s.RecoveryCodesLeft(ctx, "u1"); n != 2 {
		t.Errorf("%d codes left, want the 2 new ones", n)
	}
	_, err = s.ReverifyRecovery(ctx, keep.IDHash, "u1", hash("old"), now)
	isErr(t, err, storage.ErrNotFound, "an old code after the renewal")
	// A second renewal against the generation the first replaced (a
	// double click, a resent form) changes nothing (review A-F1).
	if cred, _ := s.TOTPByUser(ctx, "u1"); cred.Generation != 1 {
		t.Errorf("generation after the renewal: %d, want 1", cred.Generation)
	}
	isErr(t, second(s.RenewRecoveryCodes(ctx, "u1", [][]byte{hash("stale")}, keep.IDHash, 0, now)), storage.ErrWrongState,
		"RenewRecoveryCodes against a replaced generation")
	if n, _ := s.RecoveryCodesLeft(ctx, "u1"); n != 2 {
		t.Errorf("%d codes left after the refused renewal, want the 2 of the first", n)
	}
	_, err = s.EndSession(ctx, keep.IDHash, now)
	ok(t, err, "EndSession")
	isErr(t, second(s.RenewRecoveryCodes(ctx, "u1", [][]byte{hash("x")}, keep.IDHash, 1, now)), storage.ErrWrongState,
		"RenewRecoveryCodes from an ended session")
}

// testReplaceTOTP: the user's own replacement of the authenticator keeps
// the session it was made from (renewed: it proved the new one), ends the
// others, and takes the old secret and recovery codes away at once.
func testReplaceTOTP(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte("old"), Confirmed: true, LastStep: 10, CreatedAt: now}), "PutTOTP")
	_, err := s.ReplaceRecoveryCodes(ctx, "u1", [][]byte{hash("old-code")}, now)
	ok(t, err, "ReplaceRecoveryCodes")
	later := now.Add(time.Minute)
	keep := accountSession(t, s, "keep", "u1", now)
	other := accountSession(t, s, "other", "u1", now)
	e, err := s.ReplaceTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte("new"), Confirmed: true, LastStep: 5},
		[][]byte{hash("new-code")}, keep.IDHash, later)
	ok(t, err, "ReplaceTOTP")
	if e.Sessions != 1 {
		t.Errorf("ReplaceTOTP ended %+v, want the other session", e)
	}
	cred, err := s.TOTPByUser(ctx, "u1")
	ok(t, err, "TOTPByUser")
	if string(cred.Secret) != "new" || cred.LastStep != 5 || !cred.CreatedAt.Equal(later) || !cred.Confirmed || cred.Generation != 1 {
		t.Fatalf("the new credential: %+v", cred)
	}
	// An offer made against the replaced credential is refused, and so
	// are two at once but one (review A-F1).
	isErr(t, second(s.ReplaceTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte("stale"), Confirmed: true, LastStep: 7},
		nil, keep.IDHash, later)), storage.ErrWrongState, "ReplaceTOTP against a replaced generation")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.ReplaceTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte{'r', byte('0' + i)}, Confirmed: true, LastStep: 5, Generation: 1},
				[][]byte{hash("race-code")}, keep.IDHash, later)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else if !errors.Is(err, storage.ErrWrongState) && !errors.Is(err, storage.ErrBusy) {
			t.Errorf("a racing ReplaceTOTP: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("racing ReplaceTOTP of one generation: %d won, want 1", won)
	}
	cred, _ = s.TOTPByUser(ctx, "u1")
	if cred.Generation != 2 {
		t.Fatalf("generation after the race: %d, want 2", cred.Generation)
	}
	got, err := s.SessionByHash(ctx, keep.IDHash, later)
	ok(t, err, "the kept session")
	if !got.AuthTime.Equal(later) || !got.VerifiedAt.Equal(later) {
		t.Fatalf("the kept session was not renewed: auth %v verified %v", got.AuthTime, got.VerifiedAt)
	}
	_, err = s.SessionByHash(ctx, other.IDHash, later)
	isErr(t, err, storage.ErrNotFound, "the other session")
	_, err = s.ReverifyRecovery(ctx, keep.IDHash, "u1", hash("old-code"), later)
	isErr(t, err, storage.ErrNotFound, "an old recovery code")
	// Step 6 is later than the confirming code's: a sign-in may use it.
	ok(t, s.ReverifyTOTP(ctx, keep.IDHash, "u1", 6, later), "ReverifyTOTP after the replacement")
	_, err = s.EndSession(ctx, keep.IDHash, later)
	ok(t, err, "EndSession")
	isErr(t, second(s.ReplaceTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte("x"), Confirmed: true}, nil, keep.IDHash, later)),
		storage.ErrWrongState, "ReplaceTOTP from an ended session")
}

// testSignOutSession: ending a session from the account page revokes its
// offline grants too, unlike a front-channel logout (EndSession), and
// nothing of another session.
func testSignOutSession(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	gone := accountSession(t, s, "gone", "u1", now)
	kept := accountSession(t, s, "kept", "u1", now)
	grant := func(name string, sess []byte, scopes ...string) (storage.AccessToken, storage.RefreshToken) {
		rt := newRefreshToken("rt-"+name, "fam-"+name, "u1", "client-a", now)
		rt.Scopes, rt.SessionHash = append([]string{"openid"}, scopes...), sess
		at := newAccessToken("at-"+name, "u1", "client-a", now)
		at.SessionHash = sess
		ok(t, s.CreateRefreshToken(ctx, rt, at), "CreateRefreshToken %s", name)
		return at, rt
	}
	onAT, onRT := grant("on", gone.IDHash)
	offAT, offRT := grant("off", gone.IDHash, "offline_access")
	keptAT, keptRT := grant("kept", kept.IDHash, "offline_access")
	n, err := s.SignOutSession(ctx, gone.IDHash, now)
	ok(t, err, "SignOutSession")
	if n != 4 {
		t.Errorf("SignOutSession revoked %d tokens, want 4", n)
	}
	for _, at := range []storage.AccessToken{onAT, offAT} {
		accessGone(t, s, at.ID, now)
	}
	for _, rt := range []storage.RefreshToken{onRT, offRT} {
		refreshGone(t, s, rt, now)
	}
	accessLive(t, s, keptAT.ID, now)
	refreshLive(t, s, keptRT, now)
	_, err = s.SessionByHash(ctx, gone.IDHash, now)
	isErr(t, err, storage.ErrNotFound, "the signed-out session")
}

// testDeviceOfAnEndedSession: a sign-in's device is stored only while the
// session it opened is live, so an ending that committed first (a disable,
// a password reset, revoke-sessions) is not undone by the sign-in it raced
// (review of issue 12, B-F1). Without a session the device is stored as
// before.
func testDeviceOfAnEndedSession(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	live := accountSession(t, s, "live", "u1", now)
	gone := accountSession(t, s, "gone", "u1", now)
	others := accountSession(t, s, "others", "u2", now)
	_, err := s.SignOutSession(ctx, gone.IDHash, now)
	ok(t, err, "SignOutSession")
	dev := func(id string, sess []byte) storage.Device {
		return storage.Device{IDHash: hash(id), UserID: "u1", CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(time.Hour), Session: sess}
	}
	isErr(t, s.RememberDevice(ctx, dev("d-gone", gone.IDHash), nil, 5, now), storage.ErrNotFound, "RememberDevice of an ended session")
	isErr(t, s.RememberDevice(ctx, dev("d-other", others.IDHash), nil, 5, now), storage.ErrNotFound, "RememberDevice of another user's session")
	isErr(t, s.RememberDevice(ctx, dev("d-expired", live.IDHash), nil, 5, live.ExpiresAt), storage.ErrNotFound, "RememberDevice of an expired session")
	ok(t, s.RememberDevice(ctx, dev("d-live", live.IDHash), nil, 5, now), "RememberDevice of a live session")
	ok(t, s.RememberDevice(ctx, dev("d-none", nil), nil, 5, now), "RememberDevice without a session")
	ds, err := s.Devices(ctx, "u1", now)
	ok(t, err, "Devices")
	got := map[string]bool{}
	for _, d := range ds {
		got[string(d.IDHash)] = true
	}
	if len(ds) != 2 || !got[string(hash("d-live"))] || !got[string(hash("d-none"))] {
		t.Errorf("devices stored: %d, want the live session's and the one without a session", len(ds))
	}
}

// testReauthFailures: a session's tries of codes proven again are counted
// per session; a proof takes its own try back; an ended session counts
// nothing (reviews of issue 12, C-F3, E-2).
func testReauthFailures(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte("sealed"), Confirmed: true, LastStep: 10, CreatedAt: now}), "PutTOTP")
	a := accountSession(t, s, "a", "u1", now)
	b := accountSession(t, s, "b", "u1", now)
	for want := 1; want <= 3; want++ {
		n, err := s.CountReauthFailure(ctx, a.IDHash, now)
		ok(t, err, "CountReauthFailure a")
		if n != want {
			t.Fatalf("session a's failures: %d, want %d", n, want)
		}
	}
	if n, err := s.CountReauthFailure(ctx, b.IDHash, now); err != nil || n != 1 {
		t.Fatalf("session b's failures: %d (%v), want its own 1", n, err)
	}
	// A proof takes its own try back, and no more: the session's wrong
	// codes count over its whole life (review E-2).
	ok(t, s.ReverifyTOTP(ctx, a.IDHash, "u1", 11, now), "ReverifyTOTP a")
	if n, err := s.CountReauthFailure(ctx, a.IDHash, now); err != nil || n != 3 {
		t.Fatalf("session a's count after a proof and a try: %d (%v), want 3", n, err)
	}
	// A try taken back (a right code that lost its race), never below 0.
	ok(t, s.ReturnReauthTry(ctx, a.IDHash), "ReturnReauthTry a")
	if n, err := s.CountReauthFailure(ctx, a.IDHash, now); err != nil || n != 3 {
		t.Fatalf("session a's count after a try taken back and another: %d (%v), want 3", n, err)
	}
	for range 5 {
		ok(t, s.ReturnReauthTry(ctx, b.IDHash), "ReturnReauthTry b")
	}
	if n, err := s.CountReauthFailure(ctx, b.IDHash, now); err != nil || n != 1 {
		t.Fatalf("session b's count after tries taken back below zero: %d (%v), want 1", n, err)
	}
	ok(t, s.ReturnReauthTry(ctx, hash("nobody")), "ReturnReauthTry of an unknown session")
	_, err := s.SignOutSession(ctx, b.IDHash, now)
	ok(t, err, "SignOutSession b")
	_, err = s.CountReauthFailure(ctx, b.IDHash, now)
	isErr(t, err, storage.ErrNotFound, "CountReauthFailure of an ended session")
	_, err = s.CountReauthFailure(ctx, a.IDHash, a.ExpiresAt)
	isErr(t, err, storage.ErrNotFound, "CountReauthFailure of an expired session")
}
