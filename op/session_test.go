package op

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/admin"
	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/op/secret"
	"github.com/totp-idp/idp/storage"
)

// noTOTPStore hides every TOTP credential, as if the authenticator had been
// removed without the sessions being ended.
type noTOTPStore struct{ storage.Store }

func (noTOTPStore) TOTPByUser(context.Context, string) (storage.TOTPCredential, error) {
	return storage.TOTPCredential{}, storage.ErrNotFound
}

// TestSessionRechecksAccount: an SSO session satisfies a request only while
// the account still has the confirmed authenticator it signed in with; a
// session older than the current authenticator, or of an account without
// one, satisfies nothing (README, operations: signing a user out).
func TestSessionRechecksAccount(t *testing.T) {
	ctx := context.Background()
	st, sealer := testStore(t)
	adm := &admin.Admin{Store: st, Sealer: sealer, Product: "t"}
	adm.Hasher, _ = password.NewHasher(testArgon2, 1, time.Second)
	cu, err := adm.AddUser(ctx, admin.NewUser{Username: "ann", Password: "correct horse"})
	if err != nil {
		t.Fatal(err)
	}
	cred, err := st.TOTPByUser(ctx, cu.ID)
	if err != nil || !cred.Confirmed {
		t.Fatalf("user without a confirmed authenticator: %v", err)
	}
	now := cred.CreatedAt.Add(time.Hour)
	cfg := DefaultConfig("http://127.0.0.1:1")
	cfg.Sealer = sealer
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Now = func() time.Time { return now }
	open := func(store storage.Store) *Server {
		srv, err := New(ctx, cfg, store)
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv, hidden := open(st), open(noTOTPStore{st})
	session := func(cookie string, authTime time.Time) string {
		sess := storage.Session{IDHash: secret.Hash(cookie), UserID: cu.ID, AuthTime: authTime,
			CreatedAt: authTime, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := st.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		return cookie
	}
	req := &storage.AuthRequest{ID: "x"}
	if _, ok := srv.login.UsableSession(ctx, session("fresh", cred.CreatedAt.Add(time.Minute)), req); !ok {
		t.Error("a session opened with the current authenticator is refused")
	}
	if _, ok := srv.login.UsableSession(ctx, session("older", cred.CreatedAt.Add(-time.Minute)), req); ok {
		t.Error("a session older than the current authenticator satisfies a request")
	}
	if _, ok := hidden.login.UsableSession(ctx, session("gone", cred.CreatedAt.Add(time.Minute)), req); ok {
		t.Error("a session of an account without an authenticator satisfies a request")
	}
}
