package conformance

import (
	"context"
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
	ok(t, s.SaveAuthCode(ctx, "ar", hash("code"), now.Add(time.Minute)), "SaveAuthCode")
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
