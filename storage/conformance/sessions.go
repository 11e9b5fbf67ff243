package conformance

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

// second returns the error of a (value, error) pair.
func second[T any](_ T, err error) error { return err }

// liveAccess reports whether the access token is still usable.
func liveAccess(s storage.Store, id string, now time.Time) bool {
	_, err := s.AccessTokenByID(context.Background(), id, now)
	return err == nil
}

// liveRefresh reports whether the refresh token is still usable.
func liveRefresh(s storage.Store, secret string, now time.Time) bool {
	_, err := s.RefreshTokenByHash(context.Background(), hash(secret), now)
	return err == nil
}

// testSessionLinks: a login records its SSO session (CompleteFromSession,
// OpenSession); tokens carry it; EndSession revokes that session's tokens
// only, never offline_access grants, and deletes the session.
func testSessionLinks(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	mk := func(cookie string) storage.Session {
		sess := storage.Session{IDHash: hash(cookie), UserID: "u1", AuthTime: now, AMR: []string{"pwd", "otp", "mfa"},
			ACR: "acr", CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}
		ok(t, s.CreateSession(ctx, sess), "CreateSession %s", cookie)
		return sess
	}
	a := mk("browser-a")
	b := storage.Session{IDHash: hash("browser-b"), UserID: "u1", AuthTime: now, AMR: []string{"pwd", "otp", "mfa"},
		ACR: "acr", CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}

	// CompleteFromSession links; OpenSession creates a session for a done
	// request and links it, once, before its code, in one transaction.
	addAuthRequest(t, s, "sso", now)
	ok(t, s.CompleteFromSession(ctx, "sso", a, now), "CompleteFromSession")
	got, err := s.AuthRequestByID(ctx, "sso", now)
	ok(t, err, "AuthRequestByID")
	if !bytes.Equal(got.SessionHash, a.IDHash) {
		t.Fatalf("CompleteFromSession did not link the session: %x", got.SessionHash)
	}
	created := func(sess storage.Session) bool {
		_, err := s.SessionByHash(ctx, sess.IDHash, now)
		return err == nil
	}
	addAuthRequest(t, s, "early", now)
	isErr(t, s.OpenSession(ctx, "early", b), storage.ErrWrongState, "OpenSession before done")
	isErr(t, s.OpenSession(ctx, "nope", b), storage.ErrNotFound, "OpenSession unknown")
	if created(b) {
		t.Fatal("a refused OpenSession created its session")
	}
	doneRequest(t, s, "other-user", "u1", now)
	stranger := b
	stranger.UserID = "u2"
	addUser(t, s, "u2")
	isErr(t, s.OpenSession(ctx, "other-user", stranger), storage.ErrWrongState, "OpenSession for another user")
	doneRequest(t, s, "full", "u1", now)
	ok(t, s.OpenSession(ctx, "full", b), "OpenSession")
	got, _ = s.AuthRequestByID(ctx, "full", now)
	if !bytes.Equal(got.SessionHash, b.IDHash) || !created(b) {
		t.Fatalf("OpenSession: linked %x, created %t", got.SessionHash, created(b))
	}
	ok(t, s.SaveAuthCode(ctx, "full", hash("code-full"), now, now.Add(time.Minute)), "SaveAuthCode")
	late := b
	late.IDHash = hash("browser-late")
	isErr(t, s.OpenSession(ctx, "full", late), storage.ErrWrongState, "OpenSession after the code")
	// A sign-in ended (an operator, a changed factor) after its second
	// factor and before its session: no session outlives the ending (found
	// by a review: the next /authorize in that browser signed in silently).
	addUser(t, s, "u3")
	doneRequest(t, s, "ended", "u3", now)
	_, err = s.EndUserSessions(ctx, "u3", "client-b", now) // another client: "ended" lives on
	ok(t, err, "EndUserSessions at another client")
	after := late
	after.IDHash, after.UserID = hash("browser-after"), "u3"
	ok(t, s.OpenSession(ctx, "ended", after), "OpenSession after an ending at another client")
	doneRequest(t, s, "ended2", "u3", now)
	_, err = s.EndUserSessions(ctx, "u3", "", now)
	ok(t, err, "EndUserSessions")
	after.IDHash = hash("browser-after2")
	isErr(t, s.OpenSession(ctx, "ended2", after), storage.ErrNotFound, "OpenSession after the ending")
	if created(after) {
		t.Fatal("a session was opened for a sign-in the ending cancelled")
	}

	// Tokens of session a: online refresh + access, offline refresh +
	// access; of session b: one online refresh + access; one access token
	// with no session.
	online := newRefreshToken("rt-on", "", "u1", "client-a", now)
	online.Scopes, online.SessionHash = []string{"openid"}, a.IDHash
	atOn := newAccessToken("at-on", "u1", "client-a", now)
	atOn.SessionHash = a.IDHash
	ok(t, s.CreateRefreshToken(ctx, online, atOn), "online tokens")
	offline := newRefreshToken("rt-off", "", "u1", "client-a", now)
	offline.SessionHash = a.IDHash // Scopes include offline_access
	atOff := newAccessToken("at-off", "u1", "client-a", now)
	atOff.SessionHash = a.IDHash
	ok(t, s.CreateRefreshToken(ctx, offline, atOff), "offline tokens")
	other := newRefreshToken("rt-b", "", "u1", "client-a", now)
	other.Scopes, other.SessionHash = []string{"openid"}, b.IDHash
	atB := newAccessToken("at-b", "u1", "client-a", now)
	atB.SessionHash = b.IDHash
	ok(t, s.CreateRefreshToken(ctx, other, atB), "session b tokens")
	ok(t, s.CreateAccessToken(ctx, newAccessToken("at-none", "u1", "client-a", now)), "token without session")
	rt, err := s.RefreshTokenByID(ctx, "rt-on")
	ok(t, err, "RefreshTokenByID")
	if !bytes.Equal(rt.SessionHash, a.IDHash) {
		t.Fatalf("refresh token session %x", rt.SessionHash)
	}
	at, err := s.AccessTokenByID(ctx, "at-on", now)
	ok(t, err, "AccessTokenByID")
	if !bytes.Equal(at.SessionHash, a.IDHash) {
		t.Fatalf("access token session %x", at.SessionHash)
	}
	// A rotated token keeps the session of its family.
	next := newRefreshToken("rt-on-2", "", "u1", "client-a", now)
	next.Scopes, next.SessionHash = []string{"openid"}, a.IDHash
	ok(t, s.RotateRefreshToken(ctx, hash("rt-secret-rt-on"), next, storage.AccessToken{}, now), "rotate")

	// Sign-ins of session a not yet redeemed: "sso" (done, no code) and
	// "sso-code" (a code issued, not exchanged); "sso-b" is of session b.
	addAuthRequest(t, s, "sso-code", now)
	ok(t, s.CompleteFromSession(ctx, "sso-code", a, now), "CompleteFromSession sso-code")
	ok(t, s.SaveAuthCode(ctx, "sso-code", hash("code-a"), now, now.Add(time.Minute)), "SaveAuthCode sso-code")
	addAuthRequest(t, s, "sso-b", now)
	ok(t, s.CompleteFromSession(ctx, "sso-b", b, now), "CompleteFromSession sso-b")

	n, err := s.EndSession(ctx, a.IDHash, now)
	ok(t, err, "EndSession")
	if _, err := s.AuthRequestByID(ctx, "sso", now); err == nil {
		t.Fatal("EndSession left a done request of the session usable")
	}
	_, err = s.ConsumeAuthCode(ctx, hash("code-a"), now)
	isErr(t, err, storage.ErrNotFound, "code of the ended session")
	if _, err := s.AuthRequestByID(ctx, "sso-b", now); err != nil {
		t.Fatalf("EndSession cancelled another session's sign-in: %v", err)
	}
	if _, err := s.SessionByHash(ctx, a.IDHash, now); err == nil {
		t.Fatal("EndSession kept the session")
	}
	if liveAccess(s, "at-on", now) || liveRefresh(s, "rt-secret-rt-on-2", now) {
		t.Fatal("EndSession left the session's online tokens alive")
	}
	if !liveAccess(s, "at-off", now) || !liveRefresh(s, "rt-secret-rt-off", now) {
		t.Fatal("EndSession revoked an offline_access grant")
	}
	if !liveAccess(s, "at-b", now) || !liveRefresh(s, "rt-secret-rt-b", now) || !liveAccess(s, "at-none", now) {
		t.Fatal("EndSession revoked tokens of another session")
	}
	if _, err := s.SessionByHash(ctx, b.IDHash, now); err != nil {
		t.Fatalf("EndSession removed another session: %v", err)
	}
	// rt-on (used), rt-on-2 and at-on.
	if n != 3 {
		t.Fatalf("EndSession revoked %d tokens, want 3", n)
	}
	n, err = s.EndSession(ctx, a.IDHash, now)
	if err != nil || n != 0 {
		t.Fatalf("EndSession again: %d %v, want 0 nil", n, err)
	}
}

// testEndUserSessions: an operator's revoke-sessions, a TOTP reset and new
// recovery codes end every session and token of the user (offline grants
// too); with a client, only that client's tokens.
func testEndUserSessions(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	seed := func(user, tag string) {
		sess := storage.Session{IDHash: hash("s-" + tag), UserID: user, AuthTime: now, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}
		ok(t, s.CreateSession(ctx, sess), "CreateSession")
		for _, c := range []string{"client-a", "client-b"} {
			ok(t, s.CreateRefreshToken(ctx, newRefreshToken("rt-"+tag+c, "", user, c, now), newAccessToken("at-"+tag+c, user, c, now)), "tokens")
		}
	}
	seed("u1", "1")
	seed("u2", "2")
	// u1's sign-ins in progress: at the second step, done without a code,
	// with a code not redeemed, with a redeemed code (kept for reuse
	// detection); and one at client-b.
	passwordOK(t, s, "p-second", "u1", now)
	doneRequest(t, s, "p-done", "u1", now)
	doneRequest(t, s, "p-code", "u1", now)
	ok(t, s.SaveAuthCode(ctx, "p-code", hash("p-code"), now, now.Add(time.Minute)), "SaveAuthCode")
	doneRequest(t, s, "p-used", "u1", now)
	ok(t, s.SaveAuthCode(ctx, "p-used", hash("p-used"), now, now.Add(time.Minute)), "SaveAuthCode")
	ok(t, second(s.ConsumeAuthCode(ctx, hash("p-used"), now)), "ConsumeAuthCode")
	other := newAuthRequest("p-b", now)
	other.ClientID = "client-b"
	ok(t, s.CreateAuthRequest(ctx, other), "CreateAuthRequest client-b")
	ok(t, s.PasswordVerified(ctx, "p-b", "u1", now), "PasswordVerified client-b")
	_, err := s.EndUserSessions(ctx, "nobody", "", now)
	isErr(t, err, storage.ErrNotFound, "EndUserSessions unknown user")

	e, err := s.EndUserSessions(ctx, "u1", "client-b", now)
	ok(t, err, "EndUserSessions with client")
	if e.Sessions != 0 || e.Tokens != 2 || e.SignIns != 1 || liveAccess(s, "at-1client-b", now) || !liveAccess(s, "at-1client-a", now) {
		t.Fatalf("EndUserSessions client-b: %+v", e)
	}
	if _, err := s.AuthRequestByID(ctx, "p-done", now); err != nil {
		t.Fatalf("EndUserSessions with a client cancelled another client's sign-in: %v", err)
	}
	if _, err := s.SessionByHash(ctx, hash("s-1"), now); err != nil {
		t.Fatal("EndUserSessions with a client removed the SSO session")
	}
	e, err = s.EndUserSessions(ctx, "u1", "", now)
	ok(t, err, "EndUserSessions")
	if e.Sessions != 1 || e.Tokens != 2 || e.SignIns != 3 || liveAccess(s, "at-1client-a", now) || liveRefresh(s, "rt-secret-rt-1client-a", now) {
		t.Fatalf("EndUserSessions: %+v", e)
	}
	for _, id := range []string{"p-second", "p-done", "p-code", "p-b"} {
		if _, err := s.AuthRequestByID(ctx, id, now); err == nil {
			t.Fatalf("EndUserSessions left sign-in %s usable", id)
		}
	}
	_, err = s.ConsumeAuthCode(ctx, hash("p-code"), now)
	isErr(t, err, storage.ErrNotFound, "unredeemed code after EndUserSessions")
	// The redeemed code still detects reuse.
	_, err = s.ConsumeAuthCode(ctx, hash("p-used"), now)
	isErr(t, err, storage.ErrReused, "reuse of a redeemed code after EndUserSessions")
	if !liveAccess(s, "at-2client-a", now) {
		t.Fatal("EndUserSessions reached another user")
	}

	// DeleteTOTP and ReplaceRecoveryCodes end u2's sessions and tokens in
	// the same transaction.
	ok(t, s.PutTOTP(ctx, storage.TOTPCredential{UserID: "u2", Secret: []byte("sealed"), Confirmed: true, CreatedAt: now}), "PutTOTP")
	e, err = s.DeleteTOTP(ctx, "u2", now)
	ok(t, err, "DeleteTOTP")
	if e.Sessions != 1 || e.Tokens != 4 || liveAccess(s, "at-2client-a", now) {
		t.Fatalf("DeleteTOTP ended %+v", e)
	}
	seed("u2", "3")
	e, err = s.ReplaceRecoveryCodes(ctx, "u2", [][]byte{hash("rc")}, now)
	ok(t, err, "ReplaceRecoveryCodes")
	if e.Sessions != 1 || e.Tokens != 4 || liveRefresh(s, "rt-secret-rt-3client-b", now) {
		t.Fatalf("ReplaceRecoveryCodes ended %+v", e)
	}
}

// testReplaceSession: a new login in a browser retires its old session; the
// same user's tokens follow to the new session, another user's old session
// is ended (its online tokens revoked, offline grants kept).
func testReplaceSession(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	mk := func(cookie, user string) storage.Session {
		sess := storage.Session{IDHash: hash(cookie), UserID: user, AuthTime: now, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}
		ok(t, s.CreateSession(ctx, sess), "CreateSession %s", cookie)
		return sess
	}
	tokens := func(tag string, sess storage.Session, scopes ...string) {
		rt := newRefreshToken("rt-"+tag, "", sess.UserID, "client-a", now)
		rt.Scopes, rt.SessionHash = scopes, sess.IDHash
		at := newAccessToken("at-"+tag, sess.UserID, "client-a", now)
		at.SessionHash = sess.IDHash
		ok(t, s.CreateRefreshToken(ctx, rt, at), "tokens %s", tag)
	}
	old := mk("old", "u1")
	tokens("old", old, "openid")
	addAuthRequest(t, s, "from-old", now)
	ok(t, s.CompleteFromSession(ctx, "from-old", old, now), "CompleteFromSession")
	next := mk("next", "u1")
	isErr(t, s.ReplaceSession(ctx, old.IDHash, hash("missing"), now), storage.ErrNotFound, "ReplaceSession to an unknown session")
	ok(t, s.ReplaceSession(ctx, old.IDHash, next.IDHash, now), "ReplaceSession same user")
	if _, err := s.SessionByHash(ctx, old.IDHash, now); err == nil {
		t.Fatal("old session kept")
	}
	if !liveAccess(s, "at-old", now) {
		t.Fatal("same-user replacement revoked the old session's tokens")
	}
	n, err := s.EndSession(ctx, next.IDHash, now)
	ok(t, err, "EndSession")
	if n != 2 || liveAccess(s, "at-old", now) {
		t.Fatalf("tokens did not follow to the new session: revoked %d", n)
	}
	if _, err := s.AuthRequestByID(ctx, "from-old", now); err == nil {
		t.Fatal("a sign-in completed from the replaced session survived the new session's logout")
	}
	ok(t, s.ReplaceSession(ctx, hash("never"), mk("n2", "u1").IDHash, now), "ReplaceSession from an unknown session")

	// Another user signs in in the same browser: the old session ends.
	x := mk("x", "u1")
	tokens("x", x, "openid")
	tokens("xoff", x, "openid", "offline_access")
	y := mk("y", "u2")
	ok(t, s.ReplaceSession(ctx, x.IDHash, y.IDHash, now), "ReplaceSession other user")
	if liveAccess(s, "at-x", now) || !liveAccess(s, "at-xoff", now) || !liveRefresh(s, "rt-secret-rt-xoff", now) {
		t.Fatal("another user's sign-in did not end the old session as a logout would")
	}
	if _, err := s.SessionByHash(ctx, y.IDHash, now); err != nil {
		t.Fatalf("new session gone: %v", err)
	}
}
