package mail

import (
	"context"
	"strings"
	"time"

	"github.com/totp-idp/idp/op/secret"
	"github.com/totp-idp/idp/storage"
)

// Link kinds: the mails that carry a single-use link (issue 13).
const (
	// VerifyEmail: "confirm this is your address" (args: the link, how
	// long it works).
	VerifyEmail = "verify_email"
	// ResetPassword: "reset your password" (args: the link, how long it
	// works).
	ResetPassword = "reset_password"
)

// Link lifetimes and limits (README, "E-mail").
const (
	VerifyLinkLife = 24 * time.Hour
	ResetLinkLife  = 30 * time.Minute
)

// LinkLimit: one link of a purpose per account and address per 5
// minutes, 5 an hour per account whatever the addresses (review H, F3:
// an account changing its address sent a link per change, thousands a
// minute), and at most 3 an hour to one address, whichever accounts share
// it (the outer limit: a flood of requests mails nobody more than this).
var LinkLimit = storage.LinkLimit{PerUser: 5 * time.Minute, UserMax: 5, UserWindow: time.Hour, PerAddress: 3, AddressWindow: time.Hour}

// SendLink mails u at address to a new single-use link of purpose
// (storage.LinkVerifyEmail, storage.LinkResetPassword) to page (the
// issuer's URL of the page that takes it): 256 random bits, of which only
// the SHA-256 digest is stored, written with its mail in one transaction
// (storage.Store.IssueLink; storage.ErrLimited when a limit refuses). The
// token is in the query (the access log records paths only) and in the
// sealed body alone.
func (n *Notifier) SendLink(ctx context.Context, u storage.User, to, purpose, page string) error {
	kind, life, lifeText := VerifyEmail, VerifyLinkLife, Key("mail.life.verify")
	if purpose == storage.LinkResetPassword {
		kind, life, lifeText = ResetPassword, ResetLinkLife, Key("mail.life.reset")
	}
	token := secret.New(32)
	m, err := n.Make(ctx, u, to, kind, page+"?t="+token, lifeText)
	if err != nil {
		return err
	}
	l := storage.Link{Digest: secret.Hash(token), Purpose: purpose, UserID: u.ID, Email: to, CreatedAt: m.CreatedAt, ExpiresAt: m.CreatedAt.Add(life)}
	return n.Store.IssueLink(ctx, l, m, LinkLimit)
}

// LinkDigest is the stored digest of a link's token as a page got it, or
// nil when it cannot be one SendLink made (43 base64url characters): the
// store is not asked about anything else.
func LinkDigest(token string) []byte {
	if len(token) != 43 || strings.Trim(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		return nil
	}
	return secret.Hash(token)
}
