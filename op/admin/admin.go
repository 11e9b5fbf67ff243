// Package admin is the operator's side: the CLI's user, client, key and
// secret commands as methods of Admin, each audited (docs/THREAT-MODEL.md
// rule 13) with the client address "cli". It shares the store, the sealer
// and the password hasher with the provider, and nothing of its HTTP side.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/totp-idp/idp/op/account"
	"github.com/totp-idp/idp/op/audit"
	"github.com/totp-idp/idp/op/guard"
	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/op/redirect"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/op/secret"
	"github.com/totp-idp/idp/op/totp"
	"github.com/totp-idp/idp/storage"
)

// Admin performs the operator's actions (the CLI's user, client and key
// commands). Every action is audited.
type Admin struct {
	Store   storage.Store
	Sealer  *seal.Sealer
	Hasher  *password.Hasher
	Product string
	Log     *slog.Logger
	Now     func() time.Time
	// Passwords are the rules a new password meets (docs/THREAT-MODEL.md
	// R-S5); the zero value is NIST's defaults.
	Passwords password.Policy
	// Notify queues the user's security notifications with the audit row
	// of the operator's action (nil: none); a server with mail configured
	// delivers them (op/mail).
	Notify *mail.Notifier
	// Issuer is the provider's URL, for the verification link a new
	// address gets ("": none is sent; the user asks for one on the
	// account page).
	Issuer string

	mu        sync.Mutex
	unaudited error // the audit rows that could not be written (Unaudited)
}

func (a *Admin) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

// audit records an operator action after its change committed. A row that
// cannot be written is kept for Unaudited: the CLI then says the change
// was made unaudited and exits non-zero (review of issue 12, B-F2), as
// every operator action must be audited (docs/THREAT-MODEL.md rule 13).
func (a *Admin) audit(ctx context.Context, typ, userID, username, clientID, detail string) {
	err := audit.Append(ctx, a.Store, a.Log, storage.AuditEvent{Time: a.now(), Type: typ, UserID: userID, Username: username,
		ClientID: clientID, ClientIP: "cli", Detail: detail})
	if err != nil {
		a.mu.Lock()
		a.unaudited = errors.Join(a.unaudited, fmt.Errorf("%s: %w", typ, err))
		a.mu.Unlock()
	}
}

// Unaudited is nil when every action so far was audited; otherwise it
// names the events whose rows could not be written.
func (a *Admin) Unaudited() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.unaudited == nil {
		return nil
	}
	return fmt.Errorf("%w (record it by hand): %w", ErrUnaudited, a.unaudited)
}

// ErrUnaudited: a change was made but its audit row could not be written
// (the CLI's exit status 3, so a script does not retry a change that
// happened; review of issue 12, C-F4).
var ErrUnaudited = errors.New("the change was made, but its audit event could not be written")

// NewUser describes an account to create.
type NewUser struct {
	Username string
	Name     string
	Email    string
	// EmailVerified marks the address as checked by the operator
	// (the email_verified claim).
	EmailVerified bool
	Password      string
	// SkipTOTP leaves the account without a TOTP credential (enrollment at
	// first login).
	SkipTOTP bool
	// AllowWeak skips the password rules but the length bounds (a
	// migration of existing accounts); the creation's audit event says so.
	AllowWeak bool
}

// CreatedUser is the result of AddUser. TOTPURI is the otpauth:// URI to
// show once (empty when SkipTOTP).
type CreatedUser struct {
	ID       string `json:"id"`
	Username string `json:"username"`
	TOTPURI  string `json:"totp_uri,omitempty"`
}

// checkPassword applies the password rules to a new password of the
// account; allowWeak keeps only a password's length bounds.
func (a *Admin) checkPassword(pw, username, email string, allowWeak bool) error {
	if allowWeak {
		// The minimum length is a SHALL of NIST SP 800-63B-4 §3.1.1.2, as
		// the flag says (review of issue 12, B-F5: it took "ab").
		if err := a.Passwords.CheckLength(pw); err != nil {
			return err
		}
		if len(password.Normalize(pw)) > password.MaxBytes {
			return &password.WeakError{Reason: password.TooLong}
		}
		return nil
	}
	return a.Passwords.Check(pw, username, email)
}

// AddUser creates an account with an argon2id password hash and, unless
// SkipTOTP, a confirmed TOTP credential with a 160-bit secret
// (RFC 4226 R6).
func (a *Admin) AddUser(ctx context.Context, nu NewUser) (CreatedUser, error) {
	username, err := storage.CanonicalUsername(nu.Username)
	if err != nil {
		return CreatedUser{}, fmt.Errorf("username %q: %w", nu.Username, err)
	}
	if err := CheckEmail(nu.Email); err != nil {
		return CreatedUser{}, err
	}
	if err := checkName(nu.Name); err != nil {
		return CreatedUser{}, err
	}
	if nu.EmailVerified {
		if err := a.verifiedElsewhere(ctx, "", nu.Email); err != nil {
			return CreatedUser{}, err
		}
	}
	if err := a.checkPassword(nu.Password, username, nu.Email, nu.AllowWeak); err != nil {
		return CreatedUser{}, err
	}
	hash, err := a.Hasher.Hash(ctx, nu.Password)
	if err != nil {
		return CreatedUser{}, err
	}
	now := a.now()
	// The name's unknown-name counter becomes the account's: creating the
	// account must not show to someone holding the name at the limit.
	if a.Sealer == nil {
		return CreatedUser{}, errors.New("adding a user needs the secret key (--secret-key-file)")
	}
	tokenKey, err := seal.OpenTokenKey(ctx, a.Sealer, a.Store)
	if err != nil {
		return CreatedUser{}, err
	}
	u := storage.User{ID: secret.New(16), Username: username, Name: nu.Name, Email: nu.Email, EmailVerified: nu.EmailVerified,
		PasswordHash: hash, CreatedAt: now, NameKey: guard.NameKey(tokenKey, username)}
	if nu.SkipTOTP {
		// Password-only until enrollment: the provider lets that last
		// Config.EnrollWithin from now.
		u.EnrollPendingSince = now
	}
	if err := a.Store.CreateUser(ctx, u); err != nil {
		return CreatedUser{}, err
	}
	out := CreatedUser{ID: u.ID, Username: u.Username}
	if !nu.SkipTOTP {
		uri, err := a.enrollTOTP(ctx, u)
		if err != nil {
			return CreatedUser{}, err
		}
		out.TOTPURI = uri
	}
	detail := ""
	if nu.AllowWeak {
		detail = "password rules skipped (--allow-weak)"
	}
	a.audit(ctx, "user_created", u.ID, u.Username, "", detail)
	return out, nil
}

func (a *Admin) enrollTOTP(ctx context.Context, u storage.User) (string, error) {
	secret, err := totp.NewSecret()
	if err != nil {
		return "", err
	}
	key, err := totp.Key(a.Product, u.Username, secret)
	if err != nil {
		return "", err
	}
	if a.Sealer == nil {
		return "", fmt.Errorf("%w: needed to store a TOTP secret", seal.ErrKey)
	}
	sealed, err := a.Sealer.Seal(ctx, seal.AADTOTP(u.ID), secret)
	if err != nil {
		return "", err
	}
	cred := storage.TOTPCredential{UserID: u.ID, Secret: sealed, Confirmed: true, CreatedAt: a.now()}
	if err := a.Store.PutTOTP(ctx, cred); err != nil {
		return "", err
	}
	a.audit(ctx, "totp_enrolled", u.ID, u.Username, "", "by operator")
	return key.URL(), nil
}

// UserByName looks a user up by any spelling of the username.
func (a *Admin) UserByName(ctx context.Context, name string) (storage.User, error) {
	c, err := storage.CanonicalUsername(name)
	if err != nil {
		return storage.User{}, err
	}
	return a.Store.UserByUsername(ctx, c)
}

// Unlock clears every lock and failure count of the user.
func (a *Admin) Unlock(ctx context.Context, name string) (storage.User, error) {
	u, err := a.UserByName(ctx, name)
	if err != nil {
		return u, err
	}
	if err := a.Store.Unlock(ctx, u.ID); err != nil {
		return u, err
	}
	a.audit(ctx, "unlock", u.ID, u.Username, "", "by operator")
	return u, nil
}

// DeleteUser removes the user and everything of theirs; it first ends the
// user's sessions and tokens so that it can say what it ended.
func (a *Admin) DeleteUser(ctx context.Context, name string) (storage.User, storage.Ended, error) {
	u, err := a.UserByName(ctx, name)
	if err != nil {
		return u, storage.Ended{}, err
	}
	e, err := a.Store.EndUserSessions(ctx, u.ID, "", a.now())
	if err != nil {
		return u, e, err
	}
	if err := a.Store.DeleteUser(ctx, u.ID); err != nil {
		return u, e, err
	}
	a.audit(ctx, "user_deleted", u.ID, u.Username, "", "by operator; "+endedText(e))
	return u, e, nil
}

// NewClient describes a relying party to register.
type NewClient struct {
	ID                     string
	Name                   string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	Public                 bool
	PKCEOptional           bool
	// Secret, when set, is used instead of a generated one (tests, --dev).
	Secret string
}

// CreatedClient is the result of AddClient; Secret is shown once.
type CreatedClient struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
}

// AddClient registers a client. Confidential clients get a random 256-bit
// secret stored as its SHA-256 digest; public clients always require PKCE
// (RFC 9700 §2.1.1).
func (a *Admin) AddClient(ctx context.Context, nc NewClient) (CreatedClient, error) {
	if !validClientID(nc.ID) {
		return CreatedClient{}, errors.New("client id must be 1 to 128 printable ASCII characters without spaces")
	}
	if nc.ID == account.ClientID {
		// The account page's built-in client: a registered one of that id
		// would be shadowed, or would shadow it.
		return CreatedClient{}, fmt.Errorf("client id %q is the provider's own (the account page)", nc.ID)
	}
	if len(nc.RedirectURIs) == 0 {
		return CreatedClient{}, errors.New("at least one --redirect-uri is required")
	}
	for _, u := range append(append([]string{}, nc.RedirectURIs...), nc.PostLogoutRedirectURIs...) {
		if err := redirect.Check(u, nc.Public); err != nil {
			return CreatedClient{}, err
		}
	}
	if nc.Public && nc.PKCEOptional {
		return CreatedClient{}, errors.New("a public client must require PKCE")
	}
	c := storage.Client{
		ID: nc.ID, Name: nc.Name, RedirectURIs: nc.RedirectURIs, PostLogoutRedirectURIs: nc.PostLogoutRedirectURIs,
		Public: nc.Public, PKCERequired: !nc.PKCEOptional, CreatedAt: a.now(),
	}
	out := CreatedClient{ClientID: nc.ID}
	if !nc.Public {
		value := nc.Secret
		if value == "" {
			value = secret.New(32)
		}
		c.SecretHash = secret.Hash(value)
		out.ClientSecret = value
	}
	if err := a.Store.CreateClient(ctx, c); err != nil {
		return CreatedClient{}, err
	}
	a.audit(ctx, "client_created", "", "", c.ID, "")
	return out, nil
}

// DeleteClient removes a client.
func (a *Admin) DeleteClient(ctx context.Context, id string) error {
	if err := a.Store.DeleteClient(ctx, id); err != nil {
		return err
	}
	a.audit(ctx, "client_deleted", "", "", id, "by operator")
	return nil
}

// validClientID: RFC 6749 Appendix A.1 allows printable ASCII (VSCHAR) in
// a client id; the space is refused as well, since ids appear in tables,
// logs and the audit trail.
func validClientID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= 0x20 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// Audit records an operator action that has no richer helper here.
func (a *Admin) Audit(ctx context.Context, typ, detail string) {
	a.audit(ctx, typ, "", "", "", detail)
}
