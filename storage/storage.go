// Package storage defines the persistence contract of the identity provider:
// users and their credentials, the attempt guard's counters, OAuth/OIDC
// protocol state (auth requests, codes, tokens, sessions), clients, signing
// keys and the audit trail.
//
// Backends live in sub-packages (storage/sqlite). Every backend must pass the
// suite in storage/conformance unchanged. All times cross this interface as
// time.Time and are stored as UTC unix seconds.
//
// Security decisions that depend on atomicity live here, each in one
// operation: claiming a login attempt (ClaimAttempt), completing the TOTP step
// with replay protection (CompleteTOTP), consuming an authorization code
// (ConsumeAuthCode) and rotating a refresh token (RotateRefreshToken).
package storage

import (
	"context"
	"errors"
	"time"
)

// Errors returned by every backend. Callers test them with errors.Is.
var (
	// ErrNotFound: the row does not exist (or has expired, where expiry is
	// part of the lookup's contract).
	ErrNotFound = errors.New("not found")
	// ErrConflict: a unique value (username, client id) already exists.
	ErrConflict = errors.New("already exists")
	// ErrWrongState: a guarded state transition found the row in another
	// state (for example an auth request that has not passed the password
	// step, or that already has a code).
	ErrWrongState = errors.New("wrong state")
	// ErrReplay: a TOTP time step at or before the last accepted one
	// (RFC 6238 §5.2: a one-time password is accepted once only).
	ErrReplay = errors.New("one-time code already used")
	// ErrReused: a single-use secret (authorization code, refresh token)
	// was presented again; the backend has revoked what was issued from it.
	ErrReused = errors.New("single-use credential reused")
	// ErrBusy: the database stayed locked by other writers past every
	// retry. Nothing was changed; the caller may try again later.
	ErrBusy = errors.New("database busy")
)

// SecretKind names a kind of sealed (encrypted) value for ReencryptSecrets.
type SecretKind string

// Sealed values in the store. The store keeps them as opaque bytes; the
// caller seals them with a key that never lives in the database.
const (
	SecretTOTP        SecretKind = "totp"         // id: user id
	SecretPendingTOTP SecretKind = "totp-pending" // id: auth request id
	SecretSigningKey  SecretKind = "signing-key"  // id: key id
	SecretSetting     SecretKind = "setting"      // id: setting name (SealedSettingPrefix…)
	SecretMail        SecretKind = "mail"         // id: outbox row id (a body may hold a link's token)
)

// SealedSettingPrefix marks settings whose values are sealed; only those
// are passed to ReencryptSecrets.
const SealedSettingPrefix = "sealed."

// Factor names an authentication factor with its own failure counter.
type Factor string

// Factors counted by the attempt guard. Recovery codes count on FactorTOTP:
// every path that accepts a second factor shares one counter
// (docs/THREAT-MODEL.md rule 1, R-A8).
const (
	FactorPassword Factor = "password"
	FactorTOTP     Factor = "totp"
)

// Auth request stages: created → password_ok → done, or created →
// password_ok → enrolled → done when the user binds an authenticator in
// the flow (docs/THREAT-MODEL.md rule 7). Each transition is one
// guarded update. Only the TOTP step leaves enrolled: the authenticator was
// bound on the strength of the password alone, so a code from it at a later
// time step finishes the login, never the enrollment or a recovery code.
const (
	StageCreated    = "created"
	StagePasswordOK = "password_ok"
	StageEnrolled   = "enrolled"
	StageDone       = "done"
)

// User is an account. Username is the canonical form (CanonicalUsername).
type User struct {
	ID            string
	Username      string
	Name          string
	Email         string
	EmailVerified bool
	PasswordHash  string // argon2id PHC string
	CreatedAt     time.Time
	// EnrollPendingSince is when the account was put in the state of
	// enrolling at login (created without an authenticator, or reset):
	// zero while it has a confirmed one. The provider lets the password
	// alone through only for a while after it.
	EnrollPendingSince time.Time
	// NameKey is the key of the username's failure counter while it has
	// no account (ClaimUnknownAttempt). CreateUser makes that counter the
	// account's password counter and DeleteUser makes it the name's again,
	// so that someone holding a name at the limit sees nothing change when
	// an account is created or deleted. Empty: nothing moves.
	NameKey string
	// DisabledAt is when an operator disabled the account (zero: enabled).
	// A disabled account gets no code (SaveAuthCode refuses it).
	DisabledAt time.Time
	// MustChangePassword: the user chooses a new password after both
	// factors, before any code is issued (idp user set-password
	// --must-change; SaveAuthCode refuses a code meanwhile).
	MustChangePassword bool
	// PasswordChangedAt is the last SetPassword (zero: none since creation).
	PasswordChangedAt time.Time
}

// PasswordChange is a new password (SetPassword).
type PasswordChange struct {
	Hash       string // the argon2id PHC string
	MustChange bool   // the user chooses another after their next sign-in's factors
	// Keep is the SSO session of the user's own change: it stays, and the
	// change requires it live (nil: an operator's change, nothing kept).
	Keep []byte
	// KeepDevice is the remembered device of the browser making the
	// user's own change (nil: none): it stays, every other one is
	// forgotten (issue 12: "every other session and remembered device").
	KeepDevice []byte
	// OldHash, when set, is the hash the change replaces: another change
	// in between makes this one fail (ErrWrongState).
	OldHash string
}

// UserUpdate is a change of a user's profile: nil fields stay.
type UserUpdate struct {
	Name          *string
	Email         *string
	EmailVerified *bool
}

// TOTPCredential is a user's TOTP secret. Secret is stored as given: the
// provider passes an AES-256-GCM ciphertext bound to the user id.
// LastStep is the last accepted RFC 6238 time step (T = unix/30).
type TOTPCredential struct {
	UserID    string
	Secret    []byte
	Confirmed bool
	LastStep  int64
	CreatedAt time.Time
	// Generation counts the user's own changes of factors from the
	// account page (ReplaceTOTP, RenewRecoveryCodes), each conditional on
	// the generation it was offered against.
	Generation int64
}

// LockPolicy is the attempt guard's policy for one factor.
//
// The first FreeFailures consecutive failures cost nothing. The claim that
// brings the count to FreeFailures+k (k ≥ 0) locks the factor for
// BaseLock·2^k, capped at MaxLock; the lock is set when the attempt is
// claimed, before its answer is known, so concurrent claims can never exceed
// the budget. At HardLimit consecutive failures the lock has no end until
// an operator unlocks (HardLimit 0 disables it).
//
// Budget (0: none) bounds the failures in any BudgetWindow whatever
// happens in between: it is a leaky bucket that no success empties (one
// failure leaks out every BudgetWindow/Budget), and the claim that fills it
// hard-locks the factor until an operator unlocks. So over any period T at
// most Budget·(1 + T/BudgetWindow) attempts fail, however the attacker
// interleaves them with the owner's logins.
//
// Decay (0: none) makes the counter forget one failure every Decay instead
// of being reset by a success, and replaces the hard lock: a counter that
// holds HardLimit failures refuses until one is forgotten. The password
// counters decay, so that an account and a name without one follow the
// same rules over time whatever the owner does (docs/THREAT-MODEL.md rule 9):
// over any period T at most HardLimit + T/Decay attempts fail.
type LockPolicy struct {
	FreeFailures int
	BaseLock     time.Duration
	MaxLock      time.Duration
	HardLimit    int
	Budget       int
	BudgetWindow time.Duration
	Decay        time.Duration
}

// AttemptClaim is the answer of ClaimAttempt.
type AttemptClaim struct {
	// Allowed is true when the caller may verify the factor now.
	Allowed bool
	// RetryAfter is, when refused, how long the lock still lasts; when
	// allowed, how long the lock this claim set will last should the
	// attempt fail (0 if none was set).
	RetryAfter time.Duration
	// Failures counts consecutive failures including this claim.
	Failures int
	// HardLocked: refused until an operator unlocks.
	HardLocked bool
	// AtLimit: this claim brought the counter to its limit (HardLimit, or
	// the budget): the next attempt is refused until an operator unlocks
	// (HardLocked) or, for a decaying counter, until a failure is
	// forgotten.
	AtLimit bool
	// Seq numbers this claim among the counter's claims, so that
	// AttemptSucceeded gives back exactly this one.
	Seq int64
}

// AttemptState is the guard's row for one account and factor (operator view).
type AttemptState struct {
	UserID      string
	Factor      Factor
	Failures    int
	LockedUntil time.Time // zero when not locked
	HardLocked  bool
	// BudgetLevel is the failure budget's level at BudgetAt (before it
	// leaks further); BudgetSpent: the budget is used up.
	BudgetLevel   float64
	BudgetAt      time.Time
	BudgetSpent   bool
	LastFailureAt time.Time
	LastSuccessAt time.Time
}

// Client is a registered relying party.
type Client struct {
	ID                     string
	SecretHash             []byte // sha256 of the secret; empty for public clients
	Name                   string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	Public                 bool
	PKCERequired           bool
	CreatedAt              time.Time
}

// AuthRequest is an authorization request from /authorize and the login
// flow's state.
type AuthRequest struct {
	ID                  string
	ClientID            string
	RedirectURI         string
	Scopes              []string
	State               string
	Nonce               string
	ResponseType        string
	ResponseMode        string
	CodeChallenge       string
	CodeChallengeMethod string
	Prompt              []string
	MaxAge              *int64 // seconds; nil when absent
	ACRValues           []string
	LoginHint           string
	HintSubject         string // sub of a verified id_token_hint
	UILocales           []string

	Stage       string
	UserID      string
	BindingHash []byte // sha256 of the browser-binding cookie
	PasswordAt  time.Time
	// PendingTOTP is a sealed TOTP secret offered for enrollment in this
	// flow, not yet confirmed; it dies with the request.
	PendingTOTP []byte
	AuthTime    time.Time
	AMR         []string
	ACR         string
	// SessionHash is the SSO session the login opened or used; tokens
	// issued from the request carry it.
	SessionHash []byte

	CreatedAt time.Time
	ExpiresAt time.Time
}

// Ended counts what an operator action or a changed factor ended.
type Ended struct {
	Sessions int `json:"sessions"` // SSO sessions deleted
	Tokens   int `json:"tokens"`   // access and refresh tokens revoked
	// SignIns counts sign-ins in progress cancelled: requests at the
	// second step, done and waiting for their callback, or holding a code
	// not yet redeemed.
	SignIns int `json:"sign_ins"`
	// Devices counts remembered devices forgotten (their cookies no
	// longer count on their own password counters).
	Devices int `json:"devices"`
}

// Device is a remembered browser (OWASP's "device cookie" against online
// guessing): one that completed a sign-in with both factors for UserID.
// Its password attempts for that account count on its own counter, not
// the account's shared one (docs/THREAT-MODEL.md rule 14). IDHash is the
// SHA-256 of the cookie's secret.
type Device struct {
	IDHash     []byte
	UserID     string
	CreatedAt  time.Time // the first sign-in of the browser it was renewed from
	LastUsedAt time.Time // its last completed sign-in
	ExpiresAt  time.Time
	UserAgent  string
	// Session is the SSO session the sign-in opened, when it opened one:
	// the device is stored only while that session is live, so an ending
	// that commits first (disable, set-password, revoke-sessions) is not
	// undone by the sign-in it raced (review of issue 12, B-F1).
	Session []byte
	// Failures and LockedUntil: its own password counter (operator view).
	Failures    int
	LockedUntil time.Time
}

// Done reports whether both factors are recorded; only then may a code exist.
func (a *AuthRequest) Done() bool {
	return a.Stage == StageDone && a.UserID != "" && !a.AuthTime.IsZero()
}

// AccessToken is an issued opaque access token (the client holds an
// encrypted reference to ID).
type AccessToken struct {
	ID             string
	ClientID       string
	UserID         string
	Scopes         []string
	Audience       []string
	AuthRequestID  string // set when issued from a code
	RefreshTokenID string // set when issued together with a refresh token
	SessionHash    []byte // the SSO session it was issued through
	CreatedAt      time.Time
	ExpiresAt      time.Time
	RevokedAt      time.Time
}

// RefreshToken is one link in a rotation family. The client holds the
// secret whose sha256 is TokenHash.
type RefreshToken struct {
	ID            string
	TokenHash     []byte
	FamilyID      string
	ClientID      string
	UserID        string
	Scopes        []string
	Audience      []string
	AMR           []string
	ACR           string
	AuthTime      time.Time
	AuthRequestID string
	SessionHash   []byte // the SSO session the family was issued through
	CreatedAt     time.Time
	ExpiresAt     time.Time
	UsedAt        time.Time
	RevokedAt     time.Time
}

// Session is a browser's single sign-on session, opened after a full login.
// The cookie holds a random value whose sha256 is IDHash.
type Session struct {
	IDHash     []byte
	UserID     string
	AuthTime   time.Time
	AMR        []string
	ACR        string
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time
	// ClientIP and UserAgent are where the login came from (the account
	// page shows them to their owner).
	ClientIP  string
	UserAgent string
	// VerifiedAt is when the second factor was last proven in this
	// session: the login, or a reauthentication on the account page,
	// whose actions need it recent (VerifySession).
	VerifiedAt time.Time
}

// SigningKey is a key pair for ID tokens. PrivateKey is stored as given
// (the provider passes a sealed PKCS#8 DER blob); PublicJWK is the public
// JSON Web Key.
type SigningKey struct {
	ID         string
	Algorithm  string
	PrivateKey []byte
	PublicJWK  []byte
	CreatedAt  time.Time
	// ActivatesAt is when the key starts signing; zero means at once. A
	// key is published as soon as it is added, so a later activation lets
	// cached JWKS documents learn it first (README, Operations).
	ActivatesAt time.Time
	// RetiredAt is when the key stops signing: the activation of its
	// successor, possibly still ahead (zero while it has none).
	RetiredAt time.Time
	// ExpiresAt is when the public key leaves JWKS (zero while not retired).
	ExpiresAt time.Time
}

// AuditEvent is one row of the append-only audit trail. It never carries a
// password, a code or a token.
type AuditEvent struct {
	ID        int64
	Time      time.Time
	Type      string
	UserID    string
	Username  string
	ClientID  string
	ClientIP  string
	RequestID string
	Detail    string
}

// AuditFilter selects audit events; zero fields match everything.
type AuditFilter struct {
	UserID string
	Since  time.Time
	Limit  int
	// Newest lists newest first, so that Limit keeps the latest events.
	Newest bool
}

// SchemaChecker is implemented by a backend that can tell whether the
// database's schema is the one this program was built for: the readiness
// probe (/readyz) of a replica left on an older version after another one
// migrated the shared database.
type SchemaChecker interface {
	// SchemaCurrent returns nil when every migration this program has is
	// applied and none newer is; otherwise an error naming both versions.
	SchemaCurrent(ctx context.Context) error
}

// Change names what a ChangeListener reports as changed.
type Change string

const (
	ChangeClients     Change = "clients"
	ChangeSigningKeys Change = "signing_keys"
)

// ChangeListener is implemented by a backend that can tell every process
// on the database at once that clients or signing keys changed, so that
// their caches are re-read within a second instead of at their next timed
// re-read (PostgreSQL: LISTEN/NOTIFY).
type ChangeListener interface {
	// ListenChanges calls changed for each change until ctx ends, and
	// returns ctx's error. When it may have missed changes (a lost
	// connection) it reports every kind.
	ListenChanges(ctx context.Context, changed func(Change)) error
}

// TxObserver receives a backend's write transactions (metrics).
type TxObserver interface {
	// Transaction reports one write transaction, its retries included,
	// with its error (nil, a contract error such as ErrNotFound, ErrBusy,
	// or another failure).
	Transaction(d time.Duration, err error)
	// Retry reports an attempt repeated after a transient failure.
	Retry()
}

// Observable is implemented by a backend that reports its write
// transactions. ObserveTransactions is called once, before the store is
// used.
type Observable interface {
	ObserveTransactions(TxObserver)
}

// PoolStats are a connection pool's figures at one moment.
type PoolStats struct {
	Total, InUse, Max int
	// Waits counts acquisitions that had to wait for a free connection,
	// WaitTime their total wait, since the pool opened.
	Waits    int64
	WaitTime time.Duration
}

// Pooled is implemented by a backend with a connection pool.
type Pooled interface {
	PoolStats() PoolStats
}

// Compacter is implemented by a backend whose files can keep old copies of
// replaced values (storage/sqlite: WAL page images): Compact drops them, so
// that after `idp secrets rotate` the old key opens nothing in the files.
type Compacter interface {
	Compact(ctx context.Context) error
}

// Store is the contract every backend implements. Methods are safe for
// concurrent use by several goroutines and by several processes sharing the
// same database.
type Store interface {
	// Users.
	CreateUser(ctx context.Context, u User) error
	UserByID(ctx context.Context, id string) (User, error)
	// UserByUsername looks up the canonical username.
	UserByUsername(ctx context.Context, username string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// DeleteUser removes the user with credentials, counters, sessions and
	// tokens.
	DeleteUser(ctx context.Context, id string) error
	SetPasswordHash(ctx context.Context, userID, hash string) error

	// TOTP credentials. PutTOTP of a confirmed credential clears the
	// user's EnrollPendingSince.
	PutTOTP(ctx context.Context, c TOTPCredential) error
	TOTPByUser(ctx context.Context, userID string) (TOTPCredential, error)

	// DeleteTOTP removes the user's TOTP credential and recovery codes and
	// sets EnrollPendingSince to now, so the next login enrolls a new
	// authenticator within the provider's window (for a user already
	// waiting it only restarts the window); in the same transaction it ends
	// every SSO session, sign-in in progress and token of the user (whoever
	// knew the old factor is signed out). ErrNotFound when the user does
	// not exist.
	DeleteTOTP(ctx context.Context, userID string, now time.Time) (Ended, error)

	// Enrollment at login. SetPendingTOTP stores a sealed secret on a live
	// request in password_ok for userID whose user has no TOTP credential
	// (ErrWrongState otherwise); it replaces an earlier pending secret only
	// if replace is true.
	SetPendingTOTP(ctx context.Context, id, userID string, sealed []byte, replace bool, now time.Time) error
	// ConfirmEnrollment, in one transaction: requires the live request in
	// password_ok for cred.UserID with a pending secret, and the user
	// enabled and without a TOTP credential (ErrWrongState otherwise: a
	// disabled account plants no authenticator); stores cred
	// (its LastStep is the confirming code's step, so that code cannot be
	// replayed), replaces the user's recovery codes with recoveryHashes,
	// clears the pending secret and the user's EnrollPendingSince, resets
	// the TOTP failure counter and moves the request to enrolled, from
	// which only CompleteTOTP continues.
	ConfirmEnrollment(ctx context.Context, id string, cred TOTPCredential, recoveryHashes [][]byte, now time.Time) error

	// Recovery codes are stored as SHA-256 digests and used once.
	// ReplaceRecoveryCodes issues a new set because the old one may be
	// known: in one transaction it also ends every SSO session and revokes
	// every token of the user. ErrNotFound for an unknown user.
	ReplaceRecoveryCodes(ctx context.Context, userID string, hashes [][]byte, now time.Time) (Ended, error)
	// ReplaceTOTP is the user's own replacement of their authenticator
	// from the live SSO session keep (the account page), in one
	// transaction: the old credential is removed and cred stored (its
	// LastStep the confirming code's), the recovery codes become
	// recoveryHashes, the TOTP counter records a success, keep's AuthTime
	// and VerifiedAt become now (it has just proven the new authenticator,
	// and sessions older than an authenticator are worth nothing), and
	// everything else ends as with SetPassword. cred.Generation is the
	// generation of the credential it replaces, as read when the new one
	// was offered; the new one gets the next. ErrWrongState when keep is
	// no longer a live session of the user, or the confirmed credential is
	// no longer of that generation (another replacement or renewal won).
	ReplaceTOTP(ctx context.Context, cred TOTPCredential, recoveryHashes [][]byte, keep []byte, now time.Time) (Ended, error)
	// RenewRecoveryCodes is the user's own ReplaceRecoveryCodes from the
	// live SSO session keep (the account page): that session and what was
	// issued through it stay, everything else ends as with SetPassword
	// (the old codes may be known); the credential's generation, which
	// must be generation, advances. ErrWrongState when keep is no longer
	// a live session of the user, or the user has no confirmed
	// authenticator of that generation.
	RenewRecoveryCodes(ctx context.Context, userID string, hashes [][]byte, keep []byte, generation int64, now time.Time) (Ended, error)
	RecoveryCodesLeft(ctx context.Context, userID string) (int, error)
	// CompleteRecovery, in one transaction: requires the live request in
	// password_ok for userID and the user with a confirmed TOTP credential
	// (ErrWrongState otherwise: a recovery code stands in for an
	// authenticator, so an account without one cannot use it); marks the
	// user's unused code with codeHash used, changing exactly one row
	// (ErrNotFound when there is none: wrong or already used); resets the
	// TOTP failure counter; and moves the request to done. It returns the
	// number of codes left.
	CompleteRecovery(ctx context.Context, id, userID string, codeHash []byte, now time.Time, amr []string, acr string) (int, error)

	// ReencryptSecrets passes every sealed value (TOTP secrets, pending
	// secrets, signing private keys, sealed settings) to fn and stores what
	// it returns, in one transaction: an error from fn changes nothing.
	// It returns how many values changed (fn returning its input unchanged
	// leaves the row alone).
	ReencryptSecrets(ctx context.Context, fn func(kind SecretKind, id string, sealed []byte) ([]byte, error)) (int, error)

	// Attempt guard (docs/THREAT-MODEL.md rules 1–4, 8–9). ClaimAttempt atomically
	// refuses while locked, or counts the attempt as a failure (setting the
	// next lock per policy) before the caller verifies anything.
	ClaimAttempt(ctx context.Context, userID string, f Factor, now time.Time, p LockPolicy) (AttemptClaim, error)
	// ClaimUnknownAttempt is ClaimAttempt for a username that has no
	// account, keyed by an opaque key the caller derives from the name:
	// unknown names lock exactly like accounts, so a lock does not reveal
	// which names exist (docs/THREAT-MODEL.md R-W5). It never succeeds.
	ClaimUnknownAttempt(ctx context.Context, key string, now time.Time, p LockPolicy) (AttemptClaim, error)
	// AttemptSucceeded records that the attempt of claim was right. For a
	// policy without Decay it resets the factor's consecutive failures and
	// lock (Counter.Succeeded; the failure budget gives back only this
	// claim); for a decaying one it gives back only this claim
	// (LockPolicy.Refunded), so the counter holds what it would hold had
	// the attempt never been made.
	AttemptSucceeded(ctx context.Context, userID string, f Factor, claim AttemptClaim, now time.Time, p LockPolicy) error
	// AttemptStates lists the user's guard rows (empty when never used).
	AttemptStates(ctx context.Context, userID string) ([]AttemptState, error)
	// Unlock clears every lock, failure count and failure budget of the
	// user, its remembered devices' counters included.
	Unlock(ctx context.Context, userID string) error

	// Remembered devices. RememberDevice stores d after a completed
	// sign-in and forgets, in the same transaction, the device it renews
	// (replaces, when it is d.UserID's: d keeps its CreatedAt) and the
	// user's least recently used devices beyond maxPerUser. ErrNotFound
	// for an unknown user, or when d.Session is set and not a live session
	// of d.UserID.
	RememberDevice(ctx context.Context, d Device, replaces []byte, maxPerUser int, now time.Time) error
	// ClaimDeviceAttempt is ClaimAttempt on the password counter of the
	// live device idHash of userID (ErrNotFound when there is none: the
	// attempt counts on the account's shared counter instead). The claim
	// that brings the device to p.HardLimit forgets it in the same
	// transaction (AtLimit): a device cookie that fails too often is
	// revoked.
	ClaimDeviceAttempt(ctx context.Context, idHash []byte, userID string, now time.Time, p LockPolicy) (AttemptClaim, error)
	// Devices lists the user's live devices, most recently used first.
	Devices(ctx context.Context, userID string, now time.Time) ([]Device, error)

	// Clients.
	CreateClient(ctx context.Context, c Client) error
	ClientByID(ctx context.Context, id string) (Client, error)
	ListClients(ctx context.Context) ([]Client, error)
	DeleteClient(ctx context.Context, id string) error

	// Auth requests and the login state machine. CreateAuthRequest stores
	// the browser binding (BindingHash) with the request: it belongs to the
	// browser that called /authorize from the start.
	CreateAuthRequest(ctx context.Context, a AuthRequest) error
	// AuthRequestByID returns ErrNotFound for unknown or expired requests.
	AuthRequestByID(ctx context.Context, id string, now time.Time) (AuthRequest, error)
	// RebindAuthRequest replaces the browser binding, only if it is still
	// oldHash (ErrWrongState otherwise): the login renews the flow cookie
	// after each step, and the old value stops working (session fixation).
	RebindAuthRequest(ctx context.Context, id string, oldHash, newHash []byte) error
	// PasswordVerified moves created|password_ok → password_ok for userID;
	// a pending TOTP secret survives only if the user is the same.
	// ErrWrongState from enrolled and done.
	PasswordVerified(ctx context.Context, id, userID string, now time.Time) error
	// CompleteTOTP, in one transaction: requires stage password_ok or
	// enrolled with userID, advances the user's TOTP last step to step (ErrReplay unless
	// step is strictly later), resets the TOTP failure counter, and moves
	// the request to done with auth_time=now, amr and acr.
	CompleteTOTP(ctx context.Context, id, userID string, step int64, now time.Time, amr []string, acr string) error
	// CompleteFromSession moves a live request created → done from the SSO
	// session s and links the request to it (SessionHash). With s.IDHash
	// set, the session must still be live at now in the same transaction
	// (ErrNotFound otherwise): a logout racing the completion either ends
	// the session first or cancels the request it linked (EndSession).
	CompleteFromSession(ctx context.Context, id string, s Session, now time.Time) error
	// OpenSession creates the SSO session sess for the done request id
	// without a code, of sess.UserID, and links the request to it, in one
	// transaction: ErrNotFound (and nothing created) when the request is
	// unknown or no longer live at sess.CreatedAt (expired, or cancelled by
	// an ending after its second factor), ErrWrongState otherwise.
	OpenSession(ctx context.Context, id string, sess Session) error
	// SaveAuthCode stores the code's hash; only for done requests without a
	// code (one code per auth request), and only while the request is live at now:
	// a sign-in cancelled (EndSession, EndUserSessions) after the callback
	// read it gets no code (ErrNotFound). A disabled account, or one that
	// must choose a new password first, gets none either (ErrWrongState).
	SaveAuthCode(ctx context.Context, id string, codeHash []byte, now, expiresAt time.Time) error
	// AuthRequestByCodeHash returns the request holding the code in any
	// state (used, expired) and changes nothing: the caller checks the
	// client and PKCE before anything is consumed. ErrNotFound when none.
	AuthRequestByCodeHash(ctx context.Context, codeHash []byte) (AuthRequest, error)
	// ConsumeAuthCode atomically marks the code used and returns its
	// request. A second use returns ErrReused and revokes every token issued
	// from that request; an expired or unknown code returns ErrNotFound.
	ConsumeAuthCode(ctx context.Context, codeHash []byte, now time.Time) (AuthRequest, error)

	// Tokens.
	//
	// CreateAccessToken stores t. When t.AuthRequestID names a request
	// whose tokens were revoked since its code was redeemed (the code
	// reused, EndUserSessions, EndSession of the session it was completed
	// through, ReplaceSession for another user) it stores nothing and returns ErrReused: a
	// revocation between the redemption and the insert must reach them.
	CreateAccessToken(ctx context.Context, t AccessToken) error
	// AccessTokenByID returns ErrNotFound for unknown, expired or revoked
	// tokens.
	AccessTokenByID(ctx context.Context, id string, now time.Time) (AccessToken, error)
	RevokeAccessToken(ctx context.Context, id string, now time.Time) error
	// CreateRefreshToken stores a new token (and its access token, if
	// at.ID is set) in one transaction; ErrReused and nothing stored as
	// for CreateAccessToken when rt.AuthRequestID's tokens were revoked.
	CreateRefreshToken(ctx context.Context, rt RefreshToken, at AccessToken) error
	// RefreshTokenByHash returns a live token. A used token returns
	// ErrReused after revoking its family; expired, revoked or unknown
	// return ErrNotFound.
	RefreshTokenByHash(ctx context.Context, hash []byte, now time.Time) (RefreshToken, error)
	RefreshTokenByID(ctx context.Context, id string) (RefreshToken, error)
	// RefreshTokenInfo returns the token with that hash in any state and
	// changes nothing (RefreshTokenByHash revokes a reused family, which
	// only the owning client may cause). ErrNotFound when unknown.
	RefreshTokenInfo(ctx context.Context, hash []byte) (RefreshToken, error)
	// RotateRefreshToken atomically marks oldHash used and stores next
	// (same family) with its access token. If the old token was already
	// used, the family is revoked and ErrReused returned.
	RotateRefreshToken(ctx context.Context, oldHash []byte, next RefreshToken, at AccessToken, now time.Time) error
	// RevokeRefreshFamily revokes every refresh token of the family and the
	// access tokens issued with them.
	RevokeRefreshFamily(ctx context.Context, familyID string, now time.Time) error
	// EndUserSessions, in one transaction: with clientID empty, deletes
	// every SSO session of the user, cancels every sign-in of the user in
	// progress (see Ended.SignIns) and revokes every token (offline grants
	// too); with a clientID, does the same for that client's sign-ins and
	// tokens and keeps the SSO sessions. ErrNotFound for an unknown user.
	// DeleteTOTP and ReplaceRecoveryCodes end the user's sessions the same
	// way.
	EndUserSessions(ctx context.Context, userID, clientID string, now time.Time) (Ended, error)

	// Account lifecycle.
	//
	// SetPassword stores c.Hash as the user's password and, in the same
	// transaction, ends what the old password may have opened: every SSO
	// session but c.Keep (nil: all), every remembered device, every
	// sign-in in progress but those linked to c.Keep, and every token not
	// issued through c.Keep, offline grants included. The TOTP failure
	// counter and budget are reset (the password is no longer an
	// attacker's, who may have spent them). MustChangePassword becomes
	// c.MustChange, PasswordChangedAt now. A user's own change names the
	// hash it replaces and the session it keeps: it happens only while
	// both still hold and the account is not disabled, so an operator's
	// reset, a disable or an ending that landed first wins (ErrWrongState).
	// ErrNotFound for an unknown user.
	SetPassword(ctx context.Context, userID string, c PasswordChange, now time.Time) (Ended, error)
	// SetDisabled disables the account (DisabledAt = now) and ends
	// everything it is signed in with, as EndUserSessions does; or enables
	// it again, cancelling the sign-ins made while it was disabled.
	// ErrNotFound for an unknown user.
	SetDisabled(ctx context.Context, userID string, disabled bool, now time.Time) (Ended, error)
	// UpdateUser changes the profile fields set in up; ErrNotFound for an
	// unknown user.
	UpdateUser(ctx context.Context, userID string, up UserUpdate) error
	// Sessions lists the user's live SSO sessions, most recently seen
	// first.
	Sessions(ctx context.Context, userID string, now time.Time) ([]Session, error)
	// ReverifyTOTP records a fresh proof of the second factor in the live
	// SSO session idHash of userID (the account page's reauthentication),
	// in one transaction: the user's TOTP last step advances to step
	// (ErrReplay unless strictly later, shared with sign-ins), the TOTP
	// failure counter records a success, and the session's VerifiedAt
	// becomes now. ErrNotFound when the session is not live or not
	// userID's, or the user has no confirmed TOTP credential.
	ReverifyTOTP(ctx context.Context, idHash []byte, userID string, step int64, now time.Time) error
	// ReverifyRecovery is ReverifyTOTP with a recovery code, consumed
	// (ErrNotFound when no unused code has that digest); it returns how
	// many codes are left.
	ReverifyRecovery(ctx context.Context, idHash []byte, userID string, codeHash []byte, now time.Time) (int, error)
	// CountReauthFailure counts one try of a code proven again in the
	// live SSO session idHash, before the code is checked, and returns the
	// session's count. A proof (ReverifyTOTP, ReverifyRecovery,
	// ReplaceTOTP) takes its own try back, so the count is of the
	// session's wrong or unchecked codes over its whole life: an owner's
	// proofs in between do not make room for more (review of issue 12,
	// E-2). ErrNotFound when the session is not live.
	CountReauthFailure(ctx context.Context, idHash []byte, now time.Time) (int, error)
	// ReturnReauthTry takes back one try of the session idHash (not below
	// zero): a right code that lost its race to another of the session's
	// (a double click) is no wrong code. Nothing for an unknown session.
	ReturnReauthTry(ctx context.Context, idHash []byte) error

	// SSO sessions.
	CreateSession(ctx context.Context, s Session) error
	// SessionByHash returns a live session (ErrNotFound when expired).
	SessionByHash(ctx context.Context, idHash []byte, now time.Time) (Session, error)
	TouchSession(ctx context.Context, idHash []byte, now time.Time) error
	DeleteSession(ctx context.Context, idHash []byte) error
	// EndSession, in one transaction, deletes the session, cancels the
	// sign-ins completed from it and not yet redeemed (their callback and
	// code stop working), and revokes the tokens issued through it
	// (SessionHash) except those of refresh
	// families with the offline_access scope and their access tokens
	// (front-channel logout ends the browser's session, not offline
	// grants). It returns how many tokens it revoked.
	EndSession(ctx context.Context, idHash []byte, now time.Time) (int, error)
	// SignOutSession is EndSession that also revokes the session's
	// offline_access grants: the account page's "end this session" signs
	// that browser out of everything it was given.
	SignOutSession(ctx context.Context, idHash []byte, now time.Time) (int, error)
	// ReplaceSession retires a browser's previous session oldHash after a
	// new login opened newHash, in one transaction: for the same user the
	// old session's tokens and sign-ins move to the new session; for
	// another user the
	// old session is ended as by EndSession. ErrNotFound when newHash is
	// not a session; an unknown oldHash is not an error.
	ReplaceSession(ctx context.Context, oldHash, newHash []byte, now time.Time) error

	// Signing keys.
	// AddSigningKey inserts k, which signs from k.ActivatesAt (or at once
	// when that is zero). If retireOthers, the key without RetiredAt is
	// retired at k's activation and its public key kept until
	// expireOldAt; otherwise k is inserted only if every key is retired
	// (ErrConflict), so concurrent processes create one key.
	AddSigningKey(ctx context.Context, k SigningKey, retireOthers bool, expireOldAt time.Time) error
	// SigningKeys lists the keys without RetiredAt (the newest, possibly
	// not active yet), and retired keys whose public part is still
	// published at now (RetiredAt may still be ahead), newest first. The
	// key that signs at a time T is the one with the latest activation
	// at or before T that is not retired at T.
	SigningKeys(ctx context.Context, now time.Time) ([]SigningKey, error)
	// WithdrawSigningKey takes a compromised key out at once: it is
	// retired (if it was not) and leaves the published set at now.
	// ErrNotFound for an unknown id.
	WithdrawSigningKey(ctx context.Context, id string, now time.Time) error

	// Settings holds small named values (for example the opaque-token
	// encryption key). PutSettingIfAbsent returns the stored value, which is
	// value unless another writer was first.
	PutSettingIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error)
	// Setting returns the stored value (ErrNotFound when there is none)
	// without taking the write lock.
	Setting(ctx context.Context, name string) ([]byte, error)

	// The outbox (issue 13). QueueMail writes m unless a mail with its ID
	// exists (a no-op then). ClaimMails leases up to limit due mails
	// (unsent, not given up, NextAttemptAt not after now) to the caller:
	// each gets Attempts+1 and NextAttemptAt now+lease, in one
	// transaction, so concurrent senders (several replicas) never claim
	// the same mail while its lease runs. MailSent marks it sent;
	// MailRetryAt records a failed attempt and when to try again;
	// MailGaveUp marks it given up. Each is ErrNotFound for an unknown or
	// already sent mail. Mails lists the outbox, newest first;
	// RetryFailedMails makes every given-up mail due again now and returns
	// how many.
	QueueMail(ctx context.Context, m Mail) error
	ClaimMails(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Mail, error)
	MailSent(ctx context.Context, id string, now time.Time) error
	MailRetryAt(ctx context.Context, id, lastError string, next time.Time) error
	MailGaveUp(ctx context.Context, id, lastError string, now time.Time) error
	Mails(ctx context.Context, f MailFilter) ([]Mail, error)
	RetryFailedMails(ctx context.Context, now time.Time) (int, error)

	// Mailed links (issue 13). IssueLink writes l and m, its mail, in one
	// transaction, unless lim refuses (ErrLimited: nothing is written);
	// the user's older unused links of the purpose stop working
	// (UsedAt = l.CreatedAt). LinkByDigest returns a link, used or not
	// (ErrNotFound for none). UsersByVerifiedEmail lists the users whose
	// verified address is email (case-insensitive), at most limit.
	IssueLink(ctx context.Context, l Link, m Mail, lim LinkLimit) error
	LinkByDigest(ctx context.Context, digest []byte) (Link, error)
	UsersByVerifiedEmail(ctx context.Context, email string, limit int) ([]User, error)
	// VerifyEmail uses the verification link digest, in one transaction:
	// ErrNotFound unless it is an unused, unexpired LinkVerifyEmail link;
	// ErrWrongState when the user's address is no longer the one it was
	// sent to; ErrConflict when another account has that address
	// verified (one verified address, one account). Otherwise the address
	// is verified and the link used; it returns the user.
	VerifyEmail(ctx context.Context, digest []byte, now time.Time) (User, error)
	// ResetPassword uses a reset link, in one transaction: ErrNotFound
	// unless r.Link is an unused, unexpired LinkResetPassword link of
	// r.UserID, issued after the password's last change, to the address
	// the account still has; ErrWrongState for a disabled account. The second factor is taken: r.TOTPStep must be
	// after the last accepted step (ErrReplay; shared with sign-ins), or
	// r.RecoveryCode an unused code of the user (ErrNoCode). Then, as
	// SetPassword with nothing kept: the password is r.Hash, every
	// session, device, sign-in in progress and token of the user ends, the
	// TOTP counter is reset; and the password counter is cleared (the lock
	// an attacker's guesses may have set), and every unused link of the
	// user stops working.
	ResetPassword(ctx context.Context, r PasswordReset, now time.Time) (Ended, error)
	// CountLinkTry counts one second-factor try with the live reset link
	// digest, before the code is checked: at most max (control of the
	// mailbox gives max codes per link). ErrNotFound when the link is not
	// live or its tries are spent.
	CountLinkTry(ctx context.Context, digest []byte, max int, now time.Time) error

	// Audit trail (append-only).
	AppendAudit(ctx context.Context, e AuditEvent) error
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// DeleteAuditBefore deletes the events whose Time is before cutoff and
	// returns how many: the trail's retention (README, Operations). It is
	// the only way events leave the trail; a zero cutoff deletes nothing.
	DeleteAuditBefore(ctx context.Context, cutoff time.Time) (int64, error)

	// GC deletes rows that expired before now (auth requests that issued
	// a code an hour later, for reuse detection), remembered devices past
	// their expiry, and password counters of accounts and unknown names
	// alike once they are the same as none (LockPolicy.ForgetAt, as the
	// policy that wrote them computed it), outbox mails sent, given up or
	// still pending more than MailRetention ago, and mailed links LinkRetention past
	// their expiry; it returns how many. Audit events are
	// not its business (DeleteAuditBefore).
	GC(ctx context.Context, now time.Time) (int64, error)
	// Ping reports whether the database answers.
	Ping(ctx context.Context) error
	Close() error
}
