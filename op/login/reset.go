package login

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/op/totp"
	"github.com/totp-idp/idp/storage"
)

// The forgotten password (issue 13, item 5; README, "E-mail").
const (
	// ForgotPath takes a username or an address; ResetPath is the mailed
	// link's page: the second factor and a new password.
	ForgotPath = "/login/forgot"
	ResetPath  = "/login/reset"
	// forgotFloor is the least time every answer of the forgot form
	// takes, an account or none, a mail or none: the work for a real
	// account (a few reads, sealing, one write) fits well inside it, so
	// the timing tells nothing (OWASP ASVS 5.0 6.3.8; docs/THREAT-MODEL.md
	// R-M2).
	forgotFloor = 300 * time.Millisecond
	// maxIdentifier bounds the form's one field (RFC 5321 §4.5.3.1.3).
	maxIdentifier = 254
	// maxLinkTries is how many second-factor codes one reset link takes
	// (each counted before it is checked), the TOTP counter's free
	// failures by default: the mailbox alone gets no more guesses than
	// the link limits' worth (5 links an hour), on top of the counter's
	// own locks (review H, F4).
	maxLinkTries = 5
	// maxMatches bounds the accounts one address can reach: one verified
	// address is one account's (storage.Store.VerifyEmail), older data
	// aside.
	maxMatches = 3
)

// forgotPage is the form; id, when it is a sign-in's, links back to it.
func (h *Handler) forgotPage(w http.ResponseWriter, r *http.Request) error {
	id := r.URL.Query().Get("id")
	back := h.backToSignIn(id)
	if back == "" {
		id = ""
	}
	h.pages.Render(w, http.StatusOK, "forgot", pages.Data{Title: "title.forgot", BackURL: back, ID: id, Done: h.notify == nil})
	return nil
}

// backToSignIn is the sign-in page of the request id, "" for anything
// that is not a request id.
func (h *Handler) backToSignIn(id string) string {
	if len(id) == 0 || len(id) > 64 || strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		return ""
	}
	return URL(id)
}

// forgotStep answers every well-formed request the same way, with the
// same status, after at least forgotFloor: whether an account exists, has
// a verified address, was mailed a link or was limited is not told. An
// account with a verified address and an authenticator gets a reset link
// (at most one per 5 minutes, and 3 an hour to one address).
func (h *Handler) forgotStep(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	// The work is done even if the browser goes away: the answer is the
	// same either way.
	ctx := context.WithoutCancel(r.Context())
	raw := strings.TrimSpace(r.PostFormValue("identifier"))
	id := r.PostFormValue("id")
	back := h.backToSignIn(id)
	if back == "" {
		id = ""
	}
	if raw == "" || len(raw) > maxIdentifier || !utf8.ValidString(raw) {
		return &pages.Form{Status: http.StatusBadRequest, Page: "forgot", Data: pages.Data{Title: "title.forgot", BackURL: back, ID: id, Error: "forgot.bad"}}
	}
	if h.notify != nil {
		h.requestReset(ctx, raw)
	}
	if wait := forgotFloor - time.Since(start); wait > 0 {
		time.Sleep(wait)
	}
	h.pages.Render(w, http.StatusOK, "forgot", pages.Data{Title: "title.forgot", BackURL: back, ID: id, Done: true, Message: "forgot.sent"})
	return nil
}

// requestReset mails a reset link to each account raw names (its
// username, or its verified address) that can use one.
func (h *Handler) requestReset(ctx context.Context, raw string) {
	var users []storage.User
	if name, err := storage.CanonicalUsername(raw); err == nil {
		if u, err := h.store.UserByUsername(ctx, name); err == nil {
			users = append(users, u)
		}
	}
	if strings.Contains(raw, "@") {
		if byMail, err := h.store.UsersByVerifiedEmail(ctx, raw, maxMatches); err == nil {
			for _, u := range byMail {
				if len(users) == 0 || users[0].ID != u.ID {
					users = append(users, u)
				}
			}
		}
	}
	for _, u := range users {
		if u.Email == "" || !u.EmailVerified || !u.DisabledAt.IsZero() {
			continue
		}
		// The link needs the second factor: an account without one
		// (waiting to enroll) could not use it.
		if ok, err := h.hasTOTP(ctx, u.ID); err != nil || !ok {
			continue
		}
		// The link is built on the configured issuer, never on a request
		// header (Host, X-Forwarded-Host): a forged header must not send
		// a user's reset link to another site.
		switch err := h.notify.SendLink(ctx, u, u.Email, storage.LinkResetPassword, strings.TrimSuffix(h.cfg.Issuer, "/")+ResetPath); {
		case err == nil:
			h.trail.Event(ctx, "password_reset_requested", u.ID, u.Username, "", "link mailed to "+mail.Mask(u.Email))
		case errors.Is(err, storage.ErrLimited):
			h.trail.Limited(ctx, u.ID, "password_reset_limited", u.ID, u.Username, "", "no link: one was mailed within the limit")
		default:
			h.log.WarnContext(ctx, "password reset link", "err", err)
		}
	}
}

// resetLink is the live reset link of token, its user and the user's
// authenticator, or the answer for a dead link: used, expired, altered,
// its tries spent, older than the password (to the second: the stores
// keep seconds; review H, F5), sent to an address the account no longer
// has verified, of a disabled account or of one without a confirmed
// authenticator. All get the same page: the mailbox alone learns nothing
// of the account's state (docs/THREAT-MODEL.md R-W7; reviews H-F6, I-F3).
func (h *Handler) resetLink(ctx context.Context, token string) ([]byte, storage.User, storage.TOTPCredential, error) {
	var none storage.TOTPCredential
	digest := mail.LinkDigest(token)
	if digest == nil {
		return nil, storage.User{}, none, errDeadLink
	}
	l, err := h.store.LinkByDigest(ctx, digest)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, storage.User{}, none, errDeadLink
	}
	if err != nil {
		return nil, storage.User{}, none, pages.Internal("reset link", err)
	}
	if l.Purpose != storage.LinkResetPassword || !l.UsedAt.IsZero() || !h.now().Before(l.ExpiresAt) || l.Tries >= maxLinkTries {
		return nil, storage.User{}, none, errDeadLink
	}
	u, err := h.store.UserByID(ctx, l.UserID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, storage.User{}, none, errDeadLink
	}
	if err != nil {
		return nil, storage.User{}, none, pages.Internal("reset link's user", err)
	}
	changedSince := !u.PasswordChangedAt.IsZero() && u.PasswordChangedAt.Unix() >= l.CreatedAt.Unix()
	if changedSince || !strings.EqualFold(u.Email, l.Email) || !u.EmailVerified || !u.DisabledAt.IsZero() {
		return nil, storage.User{}, none, errDeadLink
	}
	cred, err := h.store.TOTPByUser(ctx, u.ID)
	if errors.Is(err, storage.ErrNotFound) || err == nil && !cred.Confirmed {
		return nil, storage.User{}, none, errDeadLink
	}
	if err != nil {
		return nil, storage.User{}, none, pages.Internal("reset link's authenticator", err)
	}
	return digest, u, cred, nil
}

// errDeadLink is every dead reset link's answer.
var errDeadLink = &pages.Error{Status: http.StatusGone, Msg: "reset.invalid", What: "reset link used, expired or unknown", Back: ForgotPath}

func (h *Handler) resetForm(token string, u storage.User, status int, msg string) *pages.Form {
	minLen := h.cfg.Passwords.MinLength
	if minLen <= 0 {
		minLen = password.DefaultMinLength
	}
	return &pages.Form{Status: status, Page: "reset", Data: pages.Data{Title: "title.reset", Token: token, Username: u.Username, Error: msg, Left: minLen}}
}

// resetPage shows the link's form (GET changes nothing).
func (h *Handler) resetPage(w http.ResponseWriter, r *http.Request) error {
	token := r.URL.Query().Get("t")
	_, u, _, err := h.resetLink(r.Context(), token)
	if err != nil {
		return err
	}
	h.show(w, h.resetForm(token, u, http.StatusOK, ""))
	return nil
}

// resetStep sets the new password: only with the account's second factor
// (OWASP ASVS 5.0 6.4.3: a reset never bypasses MFA; docs/THREAT-MODEL.md
// R-M1), claimed on the guard's TOTP counter before it is checked, as at
// a sign-in (so the mailbox alone never takes the account, and wrong
// codes here lock as wrong codes there). The link, the code and the password
// are taken in one transaction (storage.Store.ResetPassword), which ends
// every session, device and token of the account and lifts its password
// lock.
func (h *Handler) resetStep(w http.ResponseWriter, r *http.Request) error {
	// From the claim on, every write is made even if the browser goes
	// away: a dropped connection must not skip a wrong code's record.
	r = r.WithContext(context.WithoutCancel(r.Context()))
	ctx := r.Context()
	token := r.PostFormValue("t")
	digest, u, cred, err := h.resetLink(ctx, token)
	if err != nil {
		return err
	}
	next, repeat := r.PostFormValue("new"), r.PostFormValue("repeat")
	if next != repeat {
		return h.resetForm(token, u, http.StatusBadRequest, pages.MsgPasswordsDiffer)
	}
	var weak *password.WeakError
	if err := h.cfg.Passwords.Check(next, u.Username, u.Email); errors.As(err, &weak) {
		return h.resetForm(token, u, http.StatusBadRequest, pages.MsgWeak(string(weak.Reason)))
	} else if err != nil {
		return pages.Internal("password rules", err)
	}
	rawCode, rawRecovery := r.PostFormValue("code"), r.PostFormValue("recovery_code")
	var code, recovery string
	var ok bool
	if rawRecovery != "" {
		if recovery, ok = totp.NormalizeRecoveryCode(rawRecovery); !ok {
			return h.resetForm(token, u, http.StatusBadRequest, pages.MsgBadRecovery)
		}
	} else if code, ok = totp.Normalize(rawCode); !ok {
		return h.resetForm(token, u, http.StatusBadRequest, pages.MsgBadCode)
	}
	// The hashing slot before the claim, as at a sign-in's password
	// step (docs/THREAT-MODEL.md rule 3): a queue of others' hashes must
	// never turn the owner's right code into a counted failure (review G,
	// F1: a flood of unknown names made it 503 after the claim).
	slot, err := h.hasher.Reserve(ctx)
	if errors.Is(err, password.ErrBusy) {
		h.pages.Error(w, http.StatusServiceUnavailable, pages.MsgBusy, "")
		return nil
	}
	if err != nil {
		return pages.Internal("reset: hashing slot", err)
	}
	defer slot.Release()
	now := h.now()
	// The link's try first, then the account's claim: a post refused
	// while the account is locked spends a try too, so one link writes
	// at most maxLinkTries rows to the audit trail, locked or not (review
	// G, I4).
	if err := h.store.CountLinkTry(ctx, digest, maxLinkTries, now); errors.Is(err, storage.ErrNotFound) {
		return errDeadLink // its tries spent, or used, meanwhile
	} else if err != nil {
		return pages.Internal("reset: count the link's try", err)
	}
	claim, err := h.guard.Claim(ctx, u.ID, "", "", storage.FactorTOTP)
	if err != nil {
		return pages.Internal("reset: claim", err)
	}
	if !claim.Allowed {
		h.metrics.Attempt("reset", "locked")
		return &pages.Locked{Retry: claim.RetryAfter, Hard: claim.HardLocked, Now: h.now()}
	}
	reset := storage.PasswordReset{Link: digest, UserID: u.ID}
	factor := "authenticator code"
	if recovery != "" {
		reset.RecoveryCode, factor = totp.RecoveryHash(recovery), "recovery code"
	} else {
		key, err := h.sealer.Open(seal.AADTOTP(u.ID), cred.Secret)
		if err != nil {
			return pages.Internal("reset: open authenticator", err)
		}
		step, match := totp.Match(key, code, now)
		h.metrics.Attempt("totp", "evaluated")
		if !match {
			h.guard.ReauthFailed(ctx, claim, "reset_code_failed", u.ID, "")
			return h.resetForm(token, u, http.StatusUnauthorized, pages.MsgWrongCode)
		}
		if step <= cred.LastStep {
			// A code already used is no proof, and is answered as fast
			// as a wrong one: no hash first (review H, F8). The store
			// checks again in the reset's transaction.
			h.guard.ReauthFailed(ctx, claim, "reset_code_replayed", u.ID, "")
			return h.resetForm(token, u, http.StatusUnauthorized, pages.MsgWrongCode)
		}
		reset.TOTPStep = step
	}
	hash, err := slot.Hash(next)
	slot.Release()
	if err != nil {
		return pages.Internal("hash the new password", err)
	}
	reset.Hash = hash
	ended, err := h.store.ResetPassword(ctx, reset, now)
	switch {
	case errors.Is(err, storage.ErrReplay):
		// A code already used (here or at a sign-in) is no proof.
		h.guard.ReauthFailed(ctx, claim, "reset_code_replayed", u.ID, "")
		return h.resetForm(token, u, http.StatusUnauthorized, pages.MsgWrongCode)
	case errors.Is(err, storage.ErrNoCode):
		h.guard.ReauthFailed(ctx, claim, "reset_recovery_failed", u.ID, "")
		return h.resetForm(token, u, http.StatusUnauthorized, pages.MsgWrongRecovery)
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrWrongState):
		// The link was used, or the account changed, meanwhile: the
		// link is dead either way.
		h.guard.NotEvaluated(ctx, claim, "reset_not_evaluated", u.ID, "")
		return errDeadLink
	case err != nil:
		return pages.Internal("reset password", err)
	}
	h.metrics.Attempt("reset", "ok")
	if recovery != "" {
		left, _ := h.store.RecoveryCodesLeft(ctx, u.ID)
		h.trail.Event(h.notify.With(ctx, u.ID, mail.RecoveryCodeUsed, left), "recovery_code_used", u.ID, u.Username, "", fmt.Sprintf("at a password reset; codes left: %d", left))
	}
	// The notice goes to the verified address the link went to.
	h.trail.Event(h.notify.With(ctx, u.ID, mail.PasswordChanged, mail.HowReset), "password_reset", u.ID, u.Username, "",
		"through a reset link with the "+factor+"; "+endedSummary(ended)+"; password lock cleared")
	h.pages.Render(w, http.StatusOK, "reset", pages.Data{Title: "title.reset", Username: u.Username, Done: true})
	return nil
}
