package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

var linkLimit = storage.LinkLimit{PerUser: 5 * time.Minute, PerAddress: 2, AddressWindow: time.Hour, UserMax: 4, UserWindow: time.Hour}

func link(name, purpose, user, email string, at time.Time, life time.Duration) storage.Link {
	return storage.Link{Digest: hash(name), Purpose: purpose, UserID: user, Email: email, CreatedAt: at, ExpiresAt: at.Add(life)}
}

func mailCount(t *testing.T, s storage.Store) int {
	t.Helper()
	ms, err := s.Mails(context.Background(), storage.MailFilter{})
	ok(t, err, "Mails")
	return len(ms)
}

// testLinkIssue: a link and its mail are written together; a second link
// of the purpose to the user within PerUser, or one more to an address
// than PerAddress within the window (whichever accounts share it, in any
// letter case), writes neither; a newer link voids the older one; the
// other purpose is limited apart.
func testLinkIssue(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	l := link("l1", storage.LinkResetPassword, "u1", "u1@example.com", t0, 30*time.Minute)
	ok(t, s.IssueLink(ctx, l, mail("m-l1", t0), linkLimit), "IssueLink")
	got, err := s.LinkByDigest(ctx, hash("l1"))
	ok(t, err, "LinkByDigest")
	same(t, "the issued link", got, l)
	if n := mailCount(t, s); n != 1 {
		t.Fatalf("mails after a link: %d", n)
	}
	isErr(t, s.IssueLink(ctx, link("l2", storage.LinkResetPassword, "u1", "u1@example.com", t0.Add(4*time.Minute), time.Hour),
		mail("m-l2", t0.Add(4*time.Minute)), linkLimit), storage.ErrLimited, "a second link within PerUser")
	if _, err := s.LinkByDigest(ctx, hash("l2")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the refused link was written: %v", err)
	}
	if n := mailCount(t, s); n != 1 {
		t.Fatalf("the refused link's mail was written: %d mails", n)
	}
	// Another address of the user is its own (a changed address gets its
	// link at once), within the address's outer limit.
	ok(t, s.IssueLink(ctx, link("l2b", storage.LinkResetPassword, "u1", "u1-other@example.com", t0.Add(4*time.Minute), time.Hour),
		mail("m-l2b", t0.Add(4*time.Minute)), linkLimit), "a link to another address of the user")
	// The other purpose is its own.
	ok(t, s.IssueLink(ctx, link("v1", storage.LinkVerifyEmail, "u1", "u1@example.com", t0.Add(time.Minute), 24*time.Hour),
		mail("m-v1", t0.Add(time.Minute)), linkLimit), "IssueLink verify")
	// After PerUser: written, and the older reset link is void.
	at := t0.Add(6 * time.Minute)
	ok(t, s.IssueLink(ctx, link("l3", storage.LinkResetPassword, "u1", "u1@example.com", at, 30*time.Minute), mail("m-l3", at), linkLimit), "IssueLink after PerUser")
	old, err := s.LinkByDigest(ctx, hash("l2b"))
	ok(t, err, "LinkByDigest old")
	if !old.UsedAt.Equal(at) {
		t.Fatalf("the older link after a newer one: used %v, want %v", old.UsedAt, at)
	}
	if v, _ := s.LinkByDigest(ctx, hash("v1")); !v.UsedAt.IsZero() {
		t.Fatal("a reset link voided the verification link")
	}
	// The address's outer limit: two reset links to U1@example.com within
	// the hour are written (l1, l3); a third, for another account that
	// has the address, is not.
	at = t0.Add(20 * time.Minute)
	isErr(t, s.IssueLink(ctx, link("l4", storage.LinkResetPassword, "u2", "U1@Example.com", at, 30*time.Minute), mail("m-l4", at), linkLimit),
		storage.ErrLimited, "a third link to one address within the window")
	at = t0.Add(61 * time.Minute)
	ok(t, s.IssueLink(ctx, link("l5", storage.LinkResetPassword, "u2", "U1@Example.com", at, 30*time.Minute), mail("m-l5", at), linkLimit), "IssueLink after the window")
	if n := mailCount(t, s); n != 5 {
		t.Fatalf("mails: %d, want 5 (l1, l2b, v1, l3, l5)", n)
	}
	// One user through many addresses: at most UserMax an hour (u1 has
	// l1, l2b, l3 within the hour; one more, then no more).
	at = t0.Add(30 * time.Minute)
	ok(t, s.IssueLink(ctx, link("many-1", storage.LinkResetPassword, "u1", "u1+1@example.com", at, time.Minute), mail("m-many-1", at), linkLimit), "a fourth address of u1")
	isErr(t, s.IssueLink(ctx, link("many-2", storage.LinkResetPassword, "u1", "u1+2@example.com", at, time.Minute), mail("m-many-2", at), linkLimit),
		storage.ErrLimited, "a fifth link to u1 within the hour, at yet another address")
	if n := mailCount(t, s); n != 6 {
		t.Fatalf("mails: %d, want 6 (and many-1)", n)
	}
	at = t0.Add(61 * time.Minute)
	isErr(t, s.IssueLink(ctx, link("l6", storage.LinkResetPassword, "nobody", "n@example.com", at, time.Minute), mail("m-l6", at), linkLimit),
		storage.ErrNotFound, "a link for no user")
	if err := s.IssueLink(ctx, storage.Link{Digest: hash("x"), Purpose: storage.LinkVerifyEmail, UserID: "u1"}, mail("m-x", at), linkLimit); err == nil {
		t.Fatal("a link without an address was written")
	}
}

// testLinkIssueConcurrent: eight requests at once for one user's link
// write one link and one mail.
func testLinkIssueConcurrent(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	errs := together(8, func(i int) error {
		name := string(rune('a' + i))
		return s.IssueLink(ctx, link(name, storage.LinkResetPassword, "u1", "u1@example.com", t0, 30*time.Minute), mail("m-"+name, t0), linkLimit)
	})
	n := 0
	for _, err := range errs {
		if err == nil {
			n++
		} else if !errors.Is(err, storage.ErrLimited) {
			t.Fatalf("IssueLink: %v", err)
		}
	}
	if n != 1 || mailCount(t, s) != 1 {
		t.Fatalf("concurrent links: %d written, %d mails; want 1 and 1", n, mailCount(t, s))
	}
}

// testVerifyEmail: a verification link verifies the address it was sent
// to, once, before it expires; not after the address changed, not while
// another account has the address verified, not as a reset link.
func testVerifyEmail(t *testing.T, s storage.Store) {
	ctx := context.Background()
	u := addUser(t, s, "u1")
	no := false
	ok(t, s.UpdateUser(ctx, "u1", storage.UserUpdate{EmailVerified: &no}), "UpdateUser")
	issue := func(name, user, email string, at time.Time) {
		t.Helper()
		ok(t, s.IssueLink(ctx, link(name, storage.LinkVerifyEmail, user, email, at, 24*time.Hour), mail("m-"+name, at), storage.LinkLimit{}), "IssueLink %s", name)
	}
	issue("v1", "u1", u.Email, t0)
	_, err := s.VerifyEmail(ctx, hash("v1"), t0.Add(24*time.Hour))
	isErr(t, err, storage.ErrNotFound, "an expired link")
	got, err := s.VerifyEmail(ctx, hash("v1"), t0.Add(time.Hour))
	ok(t, err, "VerifyEmail")
	if !got.EmailVerified || got.ID != "u1" {
		t.Fatalf("VerifyEmail returned %+v", got)
	}
	if u, _ := s.UserByID(ctx, "u1"); !u.EmailVerified {
		t.Fatal("the address is not verified")
	}
	_, err = s.VerifyEmail(ctx, hash("v1"), t0.Add(time.Hour))
	isErr(t, err, storage.ErrNotFound, "the link used again")
	_, err = s.VerifyEmail(ctx, hash("unknown"), t0)
	isErr(t, err, storage.ErrNotFound, "an unknown link")

	// The address changed after the link was sent.
	addUser(t, s, "u2")
	ok(t, s.UpdateUser(ctx, "u2", storage.UserUpdate{EmailVerified: &no}), "UpdateUser u2")
	issue("v2", "u2", "u2@example.com", t0)
	other := "u2-new@example.com"
	ok(t, s.UpdateUser(ctx, "u2", storage.UserUpdate{Email: &other}), "UpdateUser u2 address")
	_, err = s.VerifyEmail(ctx, hash("v2"), t0.Add(time.Minute))
	isErr(t, err, storage.ErrWrongState, "a link to the old address")
	// Another account has the address verified (u1, in another case).
	taken := "U1@example.COM"
	ok(t, s.UpdateUser(ctx, "u2", storage.UserUpdate{Email: &taken}), "UpdateUser u2 to u1's address")
	issue("v3", "u2", taken, t0.Add(time.Minute))
	_, err = s.VerifyEmail(ctx, hash("v3"), t0.Add(2*time.Minute))
	isErr(t, err, storage.ErrConflict, "an address another account has verified")
	if u2, _ := s.UserByID(ctx, "u2"); u2.EmailVerified {
		t.Fatal("u2 verified an address u1 has")
	}
	users, err := s.UsersByVerifiedEmail(ctx, "u1@EXAMPLE.com", 5)
	ok(t, err, "UsersByVerifiedEmail")
	if len(users) != 1 || users[0].ID != "u1" {
		t.Fatalf("UsersByVerifiedEmail: %+v", users)
	}
	// A reset link is not a verification link.
	ok(t, s.IssueLink(ctx, link("r1", storage.LinkResetPassword, "u2", taken, t0, time.Hour), mail("m-r1", t0), storage.LinkLimit{}), "IssueLink reset")
	_, err = s.VerifyEmail(ctx, hash("r1"), t0.Add(time.Minute))
	isErr(t, err, storage.ErrNotFound, "a reset link used to verify")
}

// testResetPassword: a reset link with a fresh second factor sets the
// password and ends everything the account was signed in with, clears the
// password lock and voids the user's links; a replayed code, a used or
// unknown recovery code, another account's link, an expired or used link,
// a link older than the last password change and a disabled account
// change nothing.
func testResetPassword(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte("sealed"), Confirmed: true, LastStep: 10, CreatedAt: now}), "PutTOTP")
	_, err := s.ReplaceRecoveryCodes(ctx, "u1", [][]byte{hash("rc1"), hash("rc2")}, now)
	ok(t, err, "ReplaceRecoveryCodes")
	sess := accountSession(t, s, "s1", "u1", now)
	pw := storage.LockPolicy{FreeFailures: 1, BaseLock: time.Hour, MaxLock: time.Hour, HardLimit: 50, Decay: time.Hour}
	for range 3 {
		claim(t, s, "u1", storage.FactorPassword, now, pw)
	}
	issue := func(name, user string, at time.Time, life time.Duration) {
		t.Helper()
		ok(t, s.IssueLink(ctx, link(name, storage.LinkResetPassword, user, user+"@example.com", at, life), mail("m-"+name, at), storage.LinkLimit{}), "IssueLink %s", name)
	}
	issue("r1", "u1", now, 30*time.Minute)
	issue("r2", "u2", now, 30*time.Minute)
	at := now.Add(time.Minute)
	reset := func(l string, step int64, code []byte) error {
		_, err := s.ResetPassword(ctx, storage.PasswordReset{Link: hash(l), UserID: "u1", Hash: "$argon2id$reset", TOTPStep: step, RecoveryCode: code}, at)
		return err
	}
	isErr(t, reset("r1", 10, nil), storage.ErrReplay, "a replayed step")
	isErr(t, reset("r1", 0, hash("rc-unknown")), storage.ErrNoCode, "an unknown recovery code")
	isErr(t, reset("r2", 11, nil), storage.ErrNotFound, "another account's link")
	isErr(t, reset("nope", 11, nil), storage.ErrNotFound, "an unknown link")
	if err := reset("r1", 0, nil); err == nil {
		t.Fatal("a reset without a second factor")
	}
	if u, _ := s.UserByID(ctx, "u1"); u.PasswordHash == "$argon2id$reset" {
		t.Fatal("a refused reset set the password")
	}

	e, err := s.ResetPassword(ctx, storage.PasswordReset{Link: hash("r1"), UserID: "u1", Hash: "$argon2id$reset", TOTPStep: 11}, at)
	ok(t, err, "ResetPassword")
	if e.Sessions != 1 {
		t.Errorf("ResetPassword ended %+v, want the session", e)
	}
	u, err := s.UserByID(ctx, "u1")
	ok(t, err, "UserByID")
	if u.PasswordHash != "$argon2id$reset" || !u.PasswordChangedAt.Equal(at) || u.MustChangePassword {
		t.Fatalf("after the reset: %+v", u)
	}
	_, err = s.SessionByHash(ctx, sess.IDHash, at)
	isErr(t, err, storage.ErrNotFound, "the session after the reset")
	states, err := s.AttemptStates(ctx, "u1")
	ok(t, err, "AttemptStates")
	for _, st := range states {
		if st.Factor == storage.FactorPassword && (st.Failures != 0 || !st.LockedUntil.IsZero() && st.LockedUntil.After(at)) {
			t.Fatalf("the password counter after the reset: %+v", st)
		}
	}
	if c, _ := s.TOTPByUser(ctx, "u1"); c.LastStep != 11 {
		t.Fatalf("the TOTP step after the reset: %d, want 11", c.LastStep)
	}
	if l, _ := s.LinkByDigest(ctx, hash("r1")); !l.UsedAt.Equal(at) {
		t.Fatalf("the used link: %+v", l)
	}
	isErr(t, reset("r1", 12, nil), storage.ErrNotFound, "the link used again")

	// A link older than the last password change is void.
	issue("r3", "u1", at, 30*time.Minute)
	at = at.Add(time.Minute)
	_, err = s.SetPassword(ctx, "u1", storage.PasswordChange{Hash: "$argon2id$operator"}, at)
	ok(t, err, "SetPassword")
	at = at.Add(time.Minute)
	isErr(t, reset("r3", 0, hash("rc1")), storage.ErrNotFound, "a link the password outlived")
	// A change in the link's own second voids it too.
	issue("r3s", "u1", at, 30*time.Minute)
	_, err = s.SetPassword(ctx, "u1", storage.PasswordChange{Hash: "$argon2id$same-second"}, at)
	ok(t, err, "SetPassword in the link's second")
	isErr(t, reset("r3s", 0, hash("rc1")), storage.ErrNotFound, "a link older than a change in its own second")
	// Sent to an address the account no longer has.
	issue("r3b", "u1", at, 30*time.Minute)
	moved := "u1-moved@example.com"
	ok(t, s.UpdateUser(ctx, "u1", storage.UserUpdate{Email: &moved}), "UpdateUser")
	isErr(t, reset("r3b", 0, hash("rc1")), storage.ErrNotFound, "a link to the old address")
	back := "U1@example.com"
	ok(t, s.UpdateUser(ctx, "u1", storage.UserUpdate{Email: &back}), "UpdateUser back")
	isErr(t, reset("r3b", 0, hash("rc1")), storage.ErrNotFound, "a link to an address changed away and back")
	// The address no longer verified (the operator's --email-verified=false),
	// and a link issued before it was verified again.
	issue("r3c", "u1", at, 30*time.Minute)
	no, yes := false, true
	ok(t, s.UpdateUser(ctx, "u1", storage.UserUpdate{EmailVerified: &no}), "UpdateUser unverified")
	isErr(t, reset("r3c", 0, hash("rc1")), storage.ErrNotFound, "a link to an address no longer verified")
	ok(t, s.UpdateUser(ctx, "u1", storage.UserUpdate{EmailVerified: &yes}), "UpdateUser verified again")
	isErr(t, reset("r3c", 0, hash("rc1")), storage.ErrNotFound, "a link from before the address was verified again")
	if l, _ := s.LinkByDigest(ctx, hash("r3c")); l.UsedAt.IsZero() {
		t.Fatal("an address change left its reset link unused")
	}
	// A link to an unverified address (one issued by hand) is refused at use.
	ok(t, s.UpdateUser(ctx, "u1", storage.UserUpdate{EmailVerified: &no}), "UpdateUser unverified again")
	issue("r3d", "u1", at, 30*time.Minute)
	isErr(t, reset("r3d", 0, hash("rc1")), storage.ErrNotFound, "a link to an unverified address")
	ok(t, s.UpdateUser(ctx, "u1", storage.UserUpdate{EmailVerified: &yes}), "UpdateUser verified")
	// Expired.
	issue("r4", "u1", at, time.Minute)
	at = at.Add(time.Minute)
	isErr(t, reset("r4", 0, hash("rc1")), storage.ErrNotFound, "an expired link")
	// Disabled.
	issue("r5", "u1", at, 30*time.Minute)
	_, err = s.SetDisabled(ctx, "u1", true, at)
	ok(t, err, "SetDisabled")
	isErr(t, reset("r5", 0, hash("rc1")), storage.ErrWrongState, "a disabled account")
	_, err = s.SetDisabled(ctx, "u1", false, at)
	ok(t, err, "SetDisabled false")
	// With a recovery code, consumed.
	ok(t, reset("r5", 0, hash("rc1")), "ResetPassword with a recovery code")
	if left, _ := s.RecoveryCodesLeft(ctx, "u1"); left != 1 {
		t.Fatalf("recovery codes left after a reset with one: %d", left)
	}
}

// testResetConcurrent: one link used by eight requests at once with
// different codes resets once.
func testResetConcurrent(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte("sealed"), Confirmed: true, LastStep: 10, CreatedAt: t0}), "PutTOTP")
	ok(t, s.IssueLink(ctx, link("r", storage.LinkResetPassword, "u1", "u1@example.com", t0, time.Hour), mail("m-r", t0), storage.LinkLimit{}), "IssueLink")
	errs := together(8, func(i int) error {
		_, err := s.ResetPassword(ctx, storage.PasswordReset{Link: hash("r"), UserID: "u1", Hash: "$argon2id$r" + string(rune('a'+i)), TOTPStep: int64(11 + i)}, t0.Add(time.Minute))
		return err
	})
	if got := tally(errs); got["nil"] != 1 || got["nil"]+got["notfound"]+got["replay"] != 8 {
		t.Fatalf("concurrent resets with one link: %v, want one success", got)
	}
}

// testLinkGC: GC deletes links LinkRetention past their expiry.
func testLinkGC(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	ok(t, s.IssueLink(ctx, link("old", storage.LinkVerifyEmail, "u1", "u1@example.com", t0, time.Hour), mail("m-old", t0), storage.LinkLimit{}), "IssueLink old")
	later := t0.Add(time.Hour + storage.LinkRetention)
	ok(t, s.IssueLink(ctx, link("new", storage.LinkVerifyEmail, "u1", "u1@example.com", later, time.Hour), mail("m-new", later), storage.LinkLimit{}), "IssueLink new")
	_, err := s.GC(ctx, later.Add(time.Second))
	ok(t, err, "GC")
	_, err = s.LinkByDigest(ctx, hash("old"))
	isErr(t, err, storage.ErrNotFound, "a link past its retention")
	_, err = s.LinkByDigest(ctx, hash("new"))
	ok(t, err, "a live link after GC")
}

// testLinkTries: a reset link takes at most max counted tries, at once
// too; a link with tries left still resets; none once they are spent, or
// for a used or unknown link.
func testLinkTries(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte("sealed"), Confirmed: true, LastStep: 10, CreatedAt: t0}), "PutTOTP")
	ok(t, s.IssueLink(ctx, link("r", storage.LinkResetPassword, "u1", "u1@example.com", t0, time.Hour), mail("m-r", t0), storage.LinkLimit{}), "IssueLink")
	at := t0.Add(time.Minute)
	errs := together(8, func(int) error { return s.CountLinkTry(ctx, hash("r"), 3, at) })
	if got := tally(errs); got["nil"] != 3 || got["notfound"] != 5 {
		t.Fatalf("eight tries at once with a 3-try link: %v, want 3 counted", got)
	}
	if l, _ := s.LinkByDigest(ctx, hash("r")); l.Tries != 3 || !l.UsedAt.IsZero() {
		t.Fatalf("the link after its tries: %+v", l)
	}
	// The third try was counted and may still reset.
	_, err := s.ResetPassword(ctx, storage.PasswordReset{Link: hash("r"), UserID: "u1", Hash: "$argon2id$r", TOTPStep: 11}, at)
	ok(t, err, "ResetPassword with the last try")
	isErr(t, s.CountLinkTry(ctx, hash("r"), 3, at), storage.ErrNotFound, "a try with a used link")
	isErr(t, s.CountLinkTry(ctx, hash("nope"), 3, at), storage.ErrNotFound, "a try with an unknown link")
	ok(t, s.IssueLink(ctx, link("v", storage.LinkVerifyEmail, "u1", "u1@example.com", at, time.Hour), mail("m-v", at), storage.LinkLimit{}), "IssueLink verify")
	isErr(t, s.CountLinkTry(ctx, hash("v"), 3, at), storage.ErrNotFound, "a try with a verification link")
}
