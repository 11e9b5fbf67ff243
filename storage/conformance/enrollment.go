package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

// passwordOK creates an auth request in password_ok for userID.
func passwordOK(t *testing.T, s storage.Store, id, userID string, now time.Time) {
	t.Helper()
	addAuthRequest(t, s, id, now)
	ok(t, s.PasswordVerified(context.Background(), id, userID, now), "PasswordVerified %s", id)
}

func testEnrollment(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	u := addUser(t, s, "enroll")
	other := addUser(t, s, "enroll-other")
	addAuthRequest(t, s, "fresh", now)
	isErr(t, s.SetPendingTOTP(ctx, "fresh", u.ID, []byte("sealed-1"), false, now), storage.ErrWrongState, "pending before password")
	passwordOK(t, s, "enr", u.ID, now)
	isErr(t, s.SetPendingTOTP(ctx, "enr", other.ID, []byte("sealed-1"), false, now), storage.ErrWrongState, "pending for another user")
	isErr(t, s.SetPendingTOTP(ctx, "enr", u.ID, []byte("sealed-1"), false, now.Add(time.Hour)), storage.ErrNotFound, "pending on expired request")
	ok(t, s.SetPendingTOTP(ctx, "enr", u.ID, []byte("sealed-1"), false, now), "SetPendingTOTP")
	// A pending secret is not regenerated behind the user's back.
	isErr(t, s.SetPendingTOTP(ctx, "enr", u.ID, []byte("sealed-2"), false, now), storage.ErrWrongState, "second pending without replace")
	a, err := s.AuthRequestByID(ctx, "enr", now)
	ok(t, err, "AuthRequestByID")
	if !bytes.Equal(a.PendingTOTP, []byte("sealed-1")) {
		t.Fatalf("PendingTOTP = %q", a.PendingTOTP)
	}
	// A password step for another user in the same flow drops the pending
	// secret; the same user keeps it.
	passwordOK(t, s, "enr-switch", u.ID, now)
	ok(t, s.SetPendingTOTP(ctx, "enr-switch", u.ID, []byte("sealed-u"), false, now), "SetPendingTOTP switch")
	ok(t, s.PasswordVerified(ctx, "enr-switch", u.ID, now), "PasswordVerified same user")
	if a, _ := s.AuthRequestByID(ctx, "enr-switch", now); string(a.PendingTOTP) != "sealed-u" {
		t.Fatalf("pending lost for the same user: %q", a.PendingTOTP)
	}
	ok(t, s.PasswordVerified(ctx, "enr-switch", other.ID, now), "PasswordVerified other user")
	if a, _ := s.AuthRequestByID(ctx, "enr-switch", now); a.PendingTOTP != nil {
		t.Fatalf("pending kept for another user: %q", a.PendingTOTP)
	}
	// Confirmation stores the credential with the confirming step and the
	// recovery codes, clears the counter and the wait for enrollment, and
	// moves the request to enrolled: not done.
	p := storage.LockPolicy{FreeFailures: 5, BaseLock: time.Minute, MaxLock: time.Hour}
	claim(t, s, u.ID, storage.FactorTOTP, now, p)
	cred := storage.TOTPCredential{UserID: u.ID, Secret: []byte("sealed-final"), Confirmed: true, LastStep: 1000}
	hashes := [][]byte{hash("rc1"), hash("rc2"), hash("rc3")}
	isErr(t, s.ConfirmEnrollment(ctx, "fresh", storage.TOTPCredential{UserID: u.ID, Secret: []byte("x")}, nil, now), storage.ErrWrongState, "confirm without pending")
	ok(t, s.ConfirmEnrollment(ctx, "enr", cred, hashes, now), "ConfirmEnrollment")
	a, err = s.AuthRequestByID(ctx, "enr", now)
	ok(t, err, "AuthRequestByID")
	if a.Stage != storage.StageEnrolled || a.Done() || a.PendingTOTP != nil || !a.AuthTime.IsZero() {
		t.Fatalf("after confirm: stage %s done %v pending %q auth_time %v", a.Stage, a.Done(), a.PendingTOTP, a.AuthTime)
	}
	if got, _ := s.UserByID(ctx, u.ID); !got.EnrollPendingSince.IsZero() {
		t.Fatalf("still waiting for enrollment since %v after confirm", got.EnrollPendingSince)
	}
	isErr(t, s.SaveAuthCode(ctx, "enr", hash("code-enr"), now, now.Add(time.Minute)), storage.ErrWrongState, "code for an enrolled request")
	got, err := s.TOTPByUser(ctx, u.ID)
	ok(t, err, "TOTPByUser")
	if !bytes.Equal(got.Secret, cred.Secret) || !got.Confirmed || got.LastStep != 1000 {
		t.Fatalf("credential %+v", got)
	}
	n, err := s.RecoveryCodesLeft(ctx, u.ID)
	ok(t, err, "RecoveryCodesLeft")
	if n != 3 {
		t.Fatalf("codes left %d, want 3", n)
	}
	states, err := s.AttemptStates(ctx, u.ID)
	ok(t, err, "AttemptStates")
	for _, st := range states {
		if st.Factor == storage.FactorTOTP && st.Failures != 0 {
			t.Fatalf("totp failures %d after enrollment", st.Failures)
		}
	}
	// From enrolled only the TOTP step continues: not the password step,
	// not a recovery code (the codes were issued in this very flow), and
	// not the confirming code's step again.
	isErr(t, s.PasswordVerified(ctx, "enr", u.ID, now), storage.ErrWrongState, "PasswordVerified from enrolled")
	_, err = s.CompleteRecovery(ctx, "enr", u.ID, hash("rc1"), now, nil, "")
	isErr(t, err, storage.ErrWrongState, "recovery from enrolled")
	if n, _ := s.RecoveryCodesLeft(ctx, u.ID); n != 3 {
		t.Fatalf("a refused recovery used a code: %d left", n)
	}
	isErr(t, s.CompleteTOTP(ctx, "enr", u.ID, 1000, now, nil, ""), storage.ErrReplay, "the confirming step from enrolled")
	if a, _ := s.AuthRequestByID(ctx, "enr", now); a.Stage != storage.StageEnrolled {
		t.Fatalf("a replay moved the request to %s", a.Stage)
	}
	ok(t, s.CompleteTOTP(ctx, "enr", u.ID, 1001, now, []string{"pwd", "otp", "mfa"}, "acr"), "CompleteTOTP from enrolled")
	a, err = s.AuthRequestByID(ctx, "enr", now)
	ok(t, err, "AuthRequestByID")
	if !a.Done() || a.ACR != "acr" {
		t.Fatalf("after the TOTP step: stage %s done %v acr %q", a.Stage, a.Done(), a.ACR)
	}
	// Once a credential exists, no enrollment can start or finish.
	passwordOK(t, s, "enr2", u.ID, now)
	isErr(t, s.SetPendingTOTP(ctx, "enr2", u.ID, []byte("sealed-3"), true, now), storage.ErrWrongState, "pending with existing credential")
	// The steps used so far are consumed.
	isErr(t, s.CompleteTOTP(ctx, "enr2", u.ID, 1001, now, nil, ""), storage.ErrReplay, "replay of a used step")
	// Reset: credential and codes gone, enrollment possible again.
	ok(t, second(s.DeleteTOTP(ctx, u.ID, now)), "DeleteTOTP")
	_, err = s.TOTPByUser(ctx, u.ID)
	isErr(t, err, storage.ErrNotFound, "TOTPByUser after reset")
	if n, _ := s.RecoveryCodesLeft(ctx, u.ID); n != 0 {
		t.Fatalf("codes left after reset %d", n)
	}
	// The reset cancels the sign-in in progress (whoever was at the second
	// step with the old factor); a new sign-in may enroll.
	isErr(t, s.SetPendingTOTP(ctx, "enr2", u.ID, []byte("sealed-3"), true, now), storage.ErrNotFound, "SetPendingTOTP on a request the reset cancelled")
	passwordOK(t, s, "enr3", u.ID, now)
	ok(t, s.SetPendingTOTP(ctx, "enr3", u.ID, []byte("sealed-3"), true, now), "SetPendingTOTP after reset")
}

// testEnrollPending: the time an account began waiting for enrollment
// (User.EnrollPendingSince) round-trips, ends with a confirmed credential
// and restarts with DeleteTOTP, also for an account already waiting.
func testEnrollPending(t *testing.T, s storage.Store) {
	ctx := context.Background()
	since := t0.Add(-time.Hour)
	u := storage.User{ID: "u-wait", Username: "wait", PasswordHash: "h", CreatedAt: since, EnrollPendingSince: since}
	ok(t, s.CreateUser(ctx, u), "CreateUser waiting")
	got, err := s.UserByID(ctx, u.ID)
	ok(t, err, "UserByID")
	same(t, "UserByID", got, u)
	got, err = s.UserByUsername(ctx, u.Username)
	ok(t, err, "UserByUsername")
	same(t, "UserByUsername", got, u)
	us, err := s.ListUsers(ctx)
	ok(t, err, "ListUsers")
	if len(us) != 1 || !us[0].EnrollPendingSince.Equal(since) {
		t.Fatalf("ListUsers: %+v", us)
	}
	pending := func(what string) time.Time {
		t.Helper()
		got, err := s.UserByID(ctx, u.ID)
		ok(t, err, "UserByID %s", what)
		return got.EnrollPendingSince
	}
	// An unconfirmed credential does not end the wait; a confirmed one does.
	ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: u.ID, Secret: []byte("s"), CreatedAt: t0}), "PutTOTP unconfirmed")
	if !pending("after unconfirmed").Equal(since) {
		t.Fatal("an unconfirmed credential ended the wait for enrollment")
	}
	ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: u.ID, Secret: []byte("s"), Confirmed: true, CreatedAt: t0}), "PutTOTP confirmed")
	if p := pending("after confirmed"); !p.IsZero() {
		t.Fatalf("still waiting since %v with a confirmed credential", p)
	}
	// DeleteTOTP starts a new wait at now, and restarts one in progress.
	ok(t, second(s.DeleteTOTP(ctx, u.ID, t0)), "DeleteTOTP")
	if p := pending("after reset"); !p.Equal(t0) {
		t.Fatalf("after DeleteTOTP waiting since %v, want %v", p, t0)
	}
	ok(t, second(s.DeleteTOTP(ctx, u.ID, t0.Add(time.Hour))), "DeleteTOTP while waiting")
	if p := pending("after second reset"); !p.Equal(t0.Add(time.Hour)) {
		t.Fatalf("a second DeleteTOTP did not restart the wait: %v", p)
	}
	isErr(t, second(s.DeleteTOTP(ctx, "nobody", t0)), storage.ErrNotFound, "DeleteTOTP unknown user")
	// An account created with an authenticator never waits.
	v := addUser(t, s, "u-direct")
	if got, _ := s.UserByID(ctx, v.ID); !got.EnrollPendingSince.IsZero() {
		t.Fatalf("a user created without EnrollPendingSince waits since %v", got.EnrollPendingSince)
	}
}

func testRecoveryCodes(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	u := addUser(t, s, "rc")
	isErr(t, second(s.ReplaceRecoveryCodes(ctx, "nobody", [][]byte{hash("x")}, now)), storage.ErrNotFound, "codes for unknown user")
	ok(t, second(s.ReplaceRecoveryCodes(ctx, u.ID, [][]byte{hash("a"), hash("b")}, now)), "ReplaceRecoveryCodes")
	// Codes without a confirmed authenticator sign nobody in.
	passwordOK(t, s, "rc-none", u.ID, now)
	_, err := s.CompleteRecovery(ctx, "rc-none", u.ID, hash("a"), now, nil, "")
	isErr(t, err, storage.ErrWrongState, "recovery without a credential")
	ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: u.ID, Secret: []byte("s"), CreatedAt: now}), "PutTOTP unconfirmed")
	_, err = s.CompleteRecovery(ctx, "rc-none", u.ID, hash("a"), now, nil, "")
	isErr(t, err, storage.ErrWrongState, "recovery with an unconfirmed credential")
	if n, _ := s.RecoveryCodesLeft(ctx, u.ID); n != 2 {
		t.Fatalf("a refused recovery used a code: %d left", n)
	}
	if a, _ := s.AuthRequestByID(ctx, "rc-none", now); a.Stage != storage.StagePasswordOK {
		t.Fatalf("a refused recovery moved the request to %s", a.Stage)
	}
	ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: u.ID, Secret: []byte("s"), Confirmed: true, CreatedAt: now}), "PutTOTP")
	addAuthRequest(t, s, "rc-created", now)
	_, err = s.CompleteRecovery(ctx, "rc-created", u.ID, hash("a"), now, nil, "")
	isErr(t, err, storage.ErrWrongState, "recovery before password")
	passwordOK(t, s, "rc1", u.ID, now)
	_, err = s.CompleteRecovery(ctx, "rc1", u.ID, hash("wrong"), now, nil, "")
	isErr(t, err, storage.ErrNotFound, "wrong code")
	left, err := s.CompleteRecovery(ctx, "rc1", u.ID, hash("a"), now, []string{"pwd", "mfa"}, "acr")
	ok(t, err, "CompleteRecovery")
	if left != 1 {
		t.Fatalf("left %d, want 1", left)
	}
	a, _ := s.AuthRequestByID(ctx, "rc1", now)
	if !a.Done() || a.AMR[1] != "mfa" {
		t.Fatalf("request after recovery: %+v", a)
	}
	passwordOK(t, s, "rc2", u.ID, now)
	_, err = s.CompleteRecovery(ctx, "rc2", u.ID, hash("a"), now, nil, "")
	isErr(t, err, storage.ErrNotFound, "used code")
	// Regeneration invalidates the old set.
	ok(t, second(s.ReplaceRecoveryCodes(ctx, u.ID, [][]byte{hash("c")}, now)), "ReplaceRecoveryCodes again")
	_, err = s.CompleteRecovery(ctx, "rc2", u.ID, hash("b"), now, nil, "")
	isErr(t, err, storage.ErrNotFound, "code of the old set")
	// 20 concurrent uses of one code: exactly one success.
	for i := range 20 {
		passwordOK(t, s, fmt.Sprintf("rcc%d", i), u.ID, now)
	}
	for round := range 5 {
		code := fmt.Sprintf("race-%d", round)
		ok(t, second(s.ReplaceRecoveryCodes(ctx, u.ID, [][]byte{hash(code)}, now)), "ReplaceRecoveryCodes race")
		for i := range 20 {
			id := fmt.Sprintf("rcr%d-%d", round, i)
			passwordOK(t, s, id, u.ID, now)
		}
		errs := together(20, func(i int) error {
			_, err := s.CompleteRecovery(ctx, fmt.Sprintf("rcr%d-%d", round, i), u.ID, hash(code), now, nil, "")
			return err
		})
		if got := tally(errs); got["nil"] != 1 || got["notfound"] != 19 {
			t.Fatalf("round %d: %v, want 1 nil and 19 notfound", round, got)
		}
	}
}

func testReencryptSecrets(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	u := addUser(t, s, "sec")
	ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: u.ID, Secret: []byte("old:totp"), Confirmed: true, CreatedAt: now}), "PutTOTP")
	v := addUser(t, s, "sec2")
	passwordOK(t, s, "sec-pend", v.ID, now)
	ok(t, s.SetPendingTOTP(ctx, "sec-pend", v.ID, []byte("old:pending"), false, now), "SetPendingTOTP")
	k := newKey("kid-sec", now)
	k.PrivateKey = []byte("old:key")
	ok(t, s.AddSigningKey(ctx, k, false, time.Time{}), "AddSigningKey")
	_, err := s.PutSettingIfAbsent(ctx, storage.SealedSettingPrefix+"x", []byte("old:setting"))
	ok(t, err, "PutSettingIfAbsent")
	_, err = s.PutSettingIfAbsent(ctx, "plain", []byte("plain-value"))
	ok(t, err, "PutSettingIfAbsent")
	ml := storage.Mail{ID: "mail-sec", UserID: u.ID, Kind: "k", To: "a@example.com", Subject: "s", Body: []byte("old:mail"), CreatedAt: now}
	ok(t, s.QueueMail(ctx, ml), "QueueMail")

	// An error rolls everything back.
	_, err = s.ReencryptSecrets(ctx, func(kind storage.SecretKind, id string, b []byte) ([]byte, error) {
		if kind == storage.SecretSetting {
			return nil, errors.New("boom")
		}
		return append([]byte("new:"), b...), nil
	})
	if err == nil {
		t.Fatal("ReencryptSecrets: error from fn not returned")
	}
	if c, _ := s.TOTPByUser(ctx, u.ID); string(c.Secret) != "old:totp" {
		t.Fatalf("partial re-encryption kept: %q", c.Secret)
	}
	seen := map[storage.SecretKind]string{}
	n, err := s.ReencryptSecrets(ctx, func(kind storage.SecretKind, id string, b []byte) ([]byte, error) {
		seen[kind] = id
		return append([]byte("new:"), bytes.TrimPrefix(b, []byte("old:"))...), nil
	})
	ok(t, err, "ReencryptSecrets")
	if n != 5 {
		t.Fatalf("rewrote %d values, want 5 (%v)", n, seen)
	}
	want := map[storage.SecretKind]string{storage.SecretTOTP: u.ID, storage.SecretPendingTOTP: "sec-pend",
		storage.SecretSigningKey: "kid-sec", storage.SecretSetting: storage.SealedSettingPrefix + "x", storage.SecretMail: "mail-sec"}
	same(t, "kinds seen", seen, want)
	c, _ := s.TOTPByUser(ctx, u.ID)
	a, _ := s.AuthRequestByID(ctx, "sec-pend", now)
	keys, _ := s.SigningKeys(ctx, now)
	st, _ := s.PutSettingIfAbsent(ctx, storage.SealedSettingPrefix+"x", []byte("ignored"))
	plain, _ := s.PutSettingIfAbsent(ctx, "plain", []byte("ignored"))
	if string(c.Secret) != "new:totp" || string(a.PendingTOTP) != "new:pending" || string(keys[0].PrivateKey) != "new:key" ||
		string(st) != "new:setting" || string(plain) != "plain-value" {
		t.Fatalf("after re-encryption: %q %q %q %q %q", c.Secret, a.PendingTOTP, keys[0].PrivateKey, st, plain)
	}
	if ms, _ := s.Mails(ctx, storage.MailFilter{}); len(ms) != 1 || string(ms[0].Body) != "new:mail" {
		t.Fatalf("the outbox body after re-encryption: %+v", ms)
	}
	// Values returned unchanged are not counted (a sweep that finds
	// nothing to re-seal reports 0); a changed one is.
	n, err = s.ReencryptSecrets(ctx, func(kind storage.SecretKind, id string, b []byte) ([]byte, error) {
		if kind == storage.SecretTOTP {
			return []byte("newer:totp"), nil
		}
		return b, nil
	})
	ok(t, err, "ReencryptSecrets partial")
	if n != 1 {
		t.Fatalf("partial re-encryption counted %d values, want 1", n)
	}
	if c, _ := s.TOTPByUser(ctx, u.ID); string(c.Secret) != "newer:totp" {
		t.Fatalf("partial re-encryption: %q", c.Secret)
	}
	if st, _ := s.Setting(ctx, storage.SealedSettingPrefix+"x"); string(st) != "new:setting" {
		t.Fatalf("unchanged value rewritten: %q", st)
	}
}

func testRebind(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addAuthRequest(t, s, "unbound", t0)
	isErr(t, s.RebindAuthRequest(ctx, "unbound", hash("a"), hash("b")), storage.ErrWrongState, "rebind unbound")
	bound := newAuthRequest("rb", t0)
	bound.BindingHash = hash("a")
	ok(t, s.CreateAuthRequest(ctx, bound), "CreateAuthRequest bound")
	ok(t, s.RebindAuthRequest(ctx, "rb", hash("a"), hash("b")), "RebindAuthRequest")
	isErr(t, s.RebindAuthRequest(ctx, "rb", hash("a"), hash("c")), storage.ErrWrongState, "rebind with the old value")
	a, err := s.AuthRequestByID(ctx, "rb", t0)
	ok(t, err, "AuthRequestByID")
	if !bytes.Equal(a.BindingHash, hash("b")) {
		t.Fatalf("binding %x", a.BindingHash)
	}
	isErr(t, s.RebindAuthRequest(ctx, "nope", hash("a"), hash("b")), storage.ErrNotFound, "rebind unknown")
	// Concurrent renewals from one old value: exactly one wins.
	errs := together(10, func(i int) error {
		return s.RebindAuthRequest(ctx, "rb", hash("b"), hash(fmt.Sprint("n", i)))
	})
	if got := tally(errs); got["nil"] != 1 || got["wrongstate"] != 9 {
		t.Fatalf("concurrent rebind: %v", got)
	}
}

func testUnknownAttempts(t *testing.T, s storage.Store) {
	ctx := context.Background()
	p := storage.LockPolicy{FreeFailures: 3, BaseLock: time.Minute, MaxLock: 4 * time.Minute, HardLimit: 6}
	now := t0
	// The same schedule as an account: 3 allowed, the 3rd sets the lock.
	for i := 1; i <= 3; i++ {
		c, err := s.ClaimUnknownAttempt(ctx, "k1", now, p)
		ok(t, err, "ClaimUnknownAttempt %d", i)
		if !c.Allowed || c.Failures != i {
			t.Fatalf("claim %d: %+v", i, c)
		}
		if i == 3 && c.RetryAfter != time.Minute {
			t.Fatalf("claim 3 lock %s", c.RetryAfter)
		}
	}
	c, err := s.ClaimUnknownAttempt(ctx, "k1", now, p)
	ok(t, err, "ClaimUnknownAttempt locked")
	if c.Allowed || c.RetryAfter != time.Minute {
		t.Fatalf("locked claim: %+v", c)
	}
	// Independent of other keys and of accounts.
	if c, _ := s.ClaimUnknownAttempt(ctx, "k2", now, p); !c.Allowed || c.Failures != 1 {
		t.Fatalf("other key: %+v", c)
	}
	u := addUser(t, s, "ua")
	if c := claim(t, s, u.ID, storage.FactorPassword, now, p); !c.Allowed || c.Failures != 1 {
		t.Fatalf("account: %+v", c)
	}
	// Doubling after expiry, then the hard limit.
	now = now.Add(time.Minute)
	c, _ = s.ClaimUnknownAttempt(ctx, "k1", now, p)
	if !c.Allowed || c.RetryAfter != 2*time.Minute {
		t.Fatalf("after expiry: %+v", c)
	}
	for i := 5; i <= 6; i++ {
		now = now.Add(4 * time.Minute)
		c, _ = s.ClaimUnknownAttempt(ctx, "k1", now, p)
	}
	if !c.HardLocked {
		t.Fatalf("hard limit: %+v", c)
	}
	if c, _ := s.ClaimUnknownAttempt(ctx, "k1", now.Add(24*time.Hour), p); c.Allowed {
		t.Fatal("hard-locked unknown key allowed a day later")
	}
	// 50 concurrent claims on a fresh key: exactly FreeFailures allowed.
	errs := make([]storage.AttemptClaim, 50)
	together(50, func(i int) error {
		var err error
		errs[i], err = s.ClaimUnknownAttempt(ctx, "k3", now, p)
		return err
	})
	allowed := 0
	for _, c := range errs {
		if c.Allowed {
			allowed++
		}
	}
	if allowed != p.FreeFailures {
		t.Fatalf("concurrent: %d allowed, want %d", allowed, p.FreeFailures)
	}
	// GC never forgets a hard lock (no decay: only an operator ends it).
	later := now.Add(1000 * 24 * time.Hour)
	_, err = s.GC(ctx, later)
	ok(t, err, "GC")
	if c, _ := s.ClaimUnknownAttempt(ctx, "k1", later, p); c.Allowed || !c.HardLocked {
		t.Fatalf("GC forgot a hard-locked key: %+v", c)
	}
}
