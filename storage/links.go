package storage

import (
	"errors"
	"time"
)

// Link purposes: what a mailed single-use link does (issue 13, items 3
// and 5).
const (
	LinkVerifyEmail   = "verify_email"
	LinkResetPassword = "reset_password"
)

// Link is a single-use link mailed to a user. Only the digest of its
// token is stored (SHA-256 of 256 random bits): the token itself is in the
// mail alone.
type Link struct {
	Digest    []byte
	Purpose   string
	UserID    string
	Email     string // the address it was sent to
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero while unused; a newer link of the purpose, or a use, sets it
	Tries     int       // second-factor tries counted with it (CountLinkTry)
}

// LinkLimit bounds how often links of a purpose are mailed: at most one
// to a user at one address within PerUser (a new address gets its own at
// once), at most UserMax to a user within UserWindow whatever the
// addresses, and at most PerAddress to one address within AddressWindow,
// whichever accounts share it (the outer limit). Zero: no such limit.
type LinkLimit struct {
	PerUser       time.Duration
	UserMax       int
	UserWindow    time.Duration
	PerAddress    int
	AddressWindow time.Duration
}

// ErrLimited: the link (and its mail) was not written, as one was issued
// too recently (LinkLimit).
var ErrLimited = errors.New("rate limited")

// ErrNoCode: no unused recovery code of the user has the digest given.
var ErrNoCode = errors.New("no such unused recovery code")

// PasswordReset is the use of a reset link: the new password's hash and
// the second factor that proved it (a TOTP step, or a recovery code's
// digest), all taken in one transaction.
type PasswordReset struct {
	Link         []byte // the link's digest
	UserID       string
	Hash         string
	TOTPStep     int64  // the code's RFC 6238 step, or
	RecoveryCode []byte // a recovery code's digest
}

// LinkRetention is how long a used or expired link is kept after its
// expiry: the rate limits look back an hour at most.
const LinkRetention = 24 * time.Hour
