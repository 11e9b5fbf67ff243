package admin

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/op/secret"
	"github.com/totp-idp/idp/storage"
	"github.com/totp-idp/idp/storage/sqlite"
)

func newAdmin(t *testing.T) (*Admin, storage.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "idp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, err := seal.New(make([]byte, 32), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := sealer.Bind(ctx, st); err != nil {
		t.Fatal(err)
	}
	h, err := password.NewHasher(password.Params{MemoryKiB: 64, Time: 1, Threads: 1}, 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return &Admin{Store: st, Sealer: sealer, Hasher: h, Product: "T"}, st
}

// TestAddUserRefuses: what may not become an account is refused before
// anything is stored, with a message that says why.
func TestAddUserRefuses(t *testing.T) {
	a, st := newAdmin(t)
	ctx := context.Background()
	for _, c := range []struct {
		nu   NewUser
		want string
	}{
		{NewUser{Username: "ann", Password: "short"}, "at least 8"},
		{NewUser{Username: "", Password: "long enough"}, "username"},
		{NewUser{Username: "a\u202enn", Password: "long enough"}, "username"},
	} {
		if _, err := a.AddUser(ctx, c.nu); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("AddUser(%q): %v, want %q", c.nu.Username, err, c.want)
		}
	}
	if users, _ := st.ListUsers(ctx); len(users) != 0 {
		t.Fatalf("refused users stored: %+v", users)
	}
	if _, err := (&Admin{Store: st, Hasher: a.Hasher}).AddUser(ctx, NewUser{Username: "ann", Password: "long enough"}); err == nil || !strings.Contains(err.Error(), "secret key") {
		t.Errorf("AddUser without the secret key: %v", err)
	}
	if _, err := a.AddUser(ctx, NewUser{Username: "Ann", Password: "long enough"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddUser(ctx, NewUser{Username: "ann", Password: "long enough"}); err == nil {
		t.Error("a second account with the same canonical name")
	}
}

// TestClientRegistration: a client id and its redirect URIs are checked,
// a confidential client's secret is shown once and stored as its digest,
// and delete removes it (ErrNotFound for an unknown id).
func TestClientRegistration(t *testing.T) {
	a, st := newAdmin(t)
	ctx := context.Background()
	for _, nc := range []NewClient{
		{ID: "", RedirectURIs: []string{"https://rp.example/cb"}},
		{ID: "has space", RedirectURIs: []string{"https://rp.example/cb"}},
		{ID: "app"},
		{ID: "app", RedirectURIs: []string{"http://rp.example/cb"}},
		{ID: "app", RedirectURIs: []string{"https://rp.example/cb"}, PostLogoutRedirectURIs: []string{"javascript:alert(1)"}},
		{ID: "app", RedirectURIs: []string{"com.example.app:/cb"}, Public: true, PKCEOptional: true},
	} {
		if _, err := a.AddClient(ctx, nc); err == nil {
			t.Errorf("AddClient(%+v) accepted", nc)
		}
	}
	out, err := a.AddClient(ctx, NewClient{ID: "app", Name: "App", RedirectURIs: []string{"https://rp.example/cb"}})
	if err != nil || len(out.ClientSecret) < 40 {
		t.Fatalf("AddClient: %+v %v", out, err)
	}
	c, err := st.ClientByID(ctx, "app")
	if err != nil || string(c.SecretHash) != string(secret.Hash(out.ClientSecret)) || !c.PKCERequired {
		t.Fatalf("stored client: %+v %v", c, err)
	}
	if err := a.DeleteClient(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClientByID(ctx, "app"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("client after delete: %v", err)
	}
	if err := a.DeleteClient(ctx, "app"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleting an unknown client: %v", err)
	}
}

// TestUserActions: each operator action finds the user by any spelling of
// the name, is audited, and says what it ended; recovery codes need an
// authenticator to stand in for.
func TestUserActions(t *testing.T) {
	a, st := newAdmin(t)
	ctx := context.Background()
	if _, err := a.AddUser(ctx, NewUser{Username: "ann", Password: "long enough"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddUser(ctx, NewUser{Username: "bob", Password: "long enough", SkipTOTP: true}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := a.RegenerateRecoveryCodes(ctx, "bob"); !errors.Is(err, ErrNoAuthenticator) {
		t.Errorf("recovery codes without an authenticator: %v", err)
	}
	if _, codes, _, err := a.RegenerateRecoveryCodes(ctx, " ANN "); err != nil || len(codes) != 10 {
		t.Errorf("recovery codes: %d %v", len(codes), err)
	}
	if _, err := a.Unlock(ctx, "Ann"); err != nil {
		t.Error(err)
	}
	if _, _, err := a.RevokeSessions(ctx, "ann", "no-such-client"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("revoke at an unknown client: %v", err)
	}
	if _, e, err := a.ResetTOTP(ctx, "ann"); err != nil || EndedText(e) != "0 SSO sessions ended, 0 tokens revoked, 0 sign-ins in progress cancelled, 0 remembered devices forgotten" {
		t.Errorf("reset: %q %v", EndedText(e), err)
	}
	if _, _, err := a.DeleteUser(ctx, "nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleting an unknown user: %v", err)
	}
	if _, _, err := a.DeleteUser(ctx, "bob"); err != nil {
		t.Error(err)
	}
	evs, _ := st.ListAudit(ctx, storage.AuditFilter{})
	n := map[string]int{}
	for _, e := range evs {
		n[e.Type]++
		if e.ClientIP != "cli" {
			t.Errorf("%s audited from %q, want cli", e.Type, e.ClientIP)
		}
	}
	for _, typ := range []string{"user_created", "totp_enrolled", "recovery_codes_regenerated", "unlock", "totp_reset", "user_deleted"} {
		if n[typ] == 0 {
			t.Errorf("no %s event: %v", typ, n)
		}
	}
}
