package account

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/totp-idp/idp/op/guard"
	"github.com/totp-idp/idp/op/login"
	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/op/totp"
	"github.com/totp-idp/idp/storage"
)

// The account page's actions. Each is a POST from the page itself: the
// cross-origin protection of every form, a token bound to the SSO cookie
// (docs/THREAT-MODEL.md R-W1), and a second factor proven within the
// reauthentication window (NIST SP 800-63B-4: reauthentication before a
// change of authenticators); proving it again counts on the same guard
// counter as a sign-in's.

const (
	VerifyPath   = Path + "/verify"
	PasswordPath = Path + "/password"
	EndPath      = Path + "/sessions/end"
	CodesPath    = Path + "/recovery-codes"
)

// msgBadForm: an account form arrived incomplete or altered (not the
// sign-in's "request from the application" wording; review A-F5).
const msgBadForm = "account.bad_form"

// formToken is the account forms' token: bound to the browser's SSO
// cookie, so a page of another browser or an old session is worth nothing.
func formToken(ssoCookie string) string { return login.CSRFToken(ssoCookie, "account") }

// Handle is a session's public name on the page: not its cookie or the
// cookie's hash (the store's key), a digest of that.
func Handle(idHash []byte) string {
	sum := sha256.Sum256(append([]byte("idp-account-session:"), idHash...))
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// posted is the session of a form post with a valid token; otherwise the
// answer: signed out (the session ended) or a forgery.
func (h *Handler) posted(r *http.Request) (storage.Session, error) {
	sess, ok := h.login.CurrentSession(r)
	if !ok {
		return sess, &pages.Error{Status: http.StatusForbidden, Msg: "account.signed_out", What: "account post without a session", Back: Path}
	}
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(formToken(h.login.SSOCookie(r)))) != 1 {
		return sess, &pages.Error{Status: http.StatusForbidden, Msg: pages.MsgForgery, What: "account post: token", Back: Path}
	}
	return sess, nil
}

// fresh reports whether the second factor was proven in sess within the
// reauthentication window.
func (h *Handler) fresh(sess storage.Session) bool {
	return !sess.VerifiedAt.IsZero() && h.now().Sub(sess.VerifiedAt) <= h.reauth
}

// endedMeanwhile: the session of r (or the authenticator it was opened
// with) ended while its post was being answered.
func (h *Handler) endedMeanwhile(r *http.Request) bool {
	_, ok := h.login.CurrentSession(r)
	return !ok
}

// notEvaluated answers a reauthentication whose session ended under it:
// the claim stays counted (nothing is gained by racing an ending) and the
// browser is told it is signed out, not shown a server error.
func (h *Handler) notEvaluated(ctx context.Context, claim storage.AttemptClaim, sess storage.Session) error {
	h.guard.NotEvaluated(ctx, claim, "reauth_not_evaluated", sess.UserID, ClientID)
	return &pages.Error{Status: http.StatusForbidden, Msg: "account.signed_out", What: "reauthentication: session ended", Back: Path}
}

// again shows the account page with msg (an error) or note (a notice).
func (h *Handler) again(w http.ResponseWriter, r *http.Request, sess storage.Session, status int, msg, note string) error {
	v, err := h.view(r, sess)
	if err != nil {
		return err
	}
	h.pages.Render(w, status, "account", pages.Data{Title: "title.account", Wide: true, Account: v, Error: msg, Message: note})
	return nil
}

// verify proves the second factor again: a TOTP code or a recovery code,
// on the account's TOTP counter (the same claim as a sign-in's second
// step: a wrong code here counts and locks like one there).
func (h *Handler) verify(w http.ResponseWriter, r *http.Request) error {
	// From the first count on, every write is made even if the browser
	// goes away: a dropped connection must not skip the session's count
	// or its ending (review of issue 12, D-2). The store's own deadlines
	// bound them.
	r = r.WithContext(context.WithoutCancel(r.Context()))
	ctx := r.Context()
	sess, err := h.posted(r)
	if err != nil {
		return err
	}
	rawCode, rawRecovery := r.PostFormValue("code"), r.PostFormValue("recovery_code")
	var code, recovery string
	var ok bool
	if rawRecovery != "" {
		recovery, ok = totp.NormalizeRecoveryCode(rawRecovery)
	} else {
		code, ok = totp.Normalize(rawCode)
	}
	if !ok && rawRecovery != "" {
		return h.again(w, r, sess, http.StatusBadRequest, pages.MsgBadRecovery, "")
	}
	if !ok {
		return h.again(w, r, sess, http.StatusBadRequest, pages.MsgBadCode, "")
	}
	tries, err := h.chargeSession(ctx, w, sess)
	if err != nil {
		return err
	}
	claim, err := h.guard.Claim(ctx, sess.UserID, "", ClientID, storage.FactorTOTP)
	if err != nil {
		return pages.Internal("account: reauthentication claim", err)
	}
	if !claim.Allowed {
		return &pages.Locked{Retry: claim.RetryAfter, Hard: claim.HardLocked, Now: h.now(), Back: Path}
	}
	now := h.now()
	if recovery != "" {
		left, err := h.store.ReverifyRecovery(ctx, sess.IDHash, sess.UserID, totp.RecoveryHash(recovery), now)
		if errors.Is(err, storage.ErrNotFound) && h.endedMeanwhile(r) {
			return h.notEvaluated(ctx, claim, sess)
		}
		if errors.Is(err, storage.ErrNotFound) {
			h.guard.ReauthFailed(ctx, claim, "reauth_recovery_failed", sess.UserID, ClientID)
			if tries >= maxSessionReauthFailures {
				return h.endAfterWrongCodes(ctx, w, sess, tries)
			}
			return h.again(w, r, sess, http.StatusUnauthorized, pages.MsgWrongRecovery, "")
		}
		if err != nil {
			return pages.Internal("account: reauthentication", err)
		}
		h.trail.Event(h.notify.With(ctx, sess.UserID, mail.RecoveryCodeUsed, left), "reauthenticated", sess.UserID, "", ClientID, fmt.Sprintf("recovery code; %d left", left))
		return &pages.SeeOther{URL: Path}
	}
	cred, err := h.store.TOTPByUser(ctx, sess.UserID)
	if err != nil {
		return pages.Internal("account: authenticator", err)
	}
	key, err := h.sealer.Open(seal.AADTOTP(sess.UserID), cred.Secret)
	if err != nil {
		return pages.Internal("account: open authenticator", err)
	}
	step, match := totp.Match(key, code, now)
	if match {
		err = h.store.ReverifyTOTP(ctx, sess.IDHash, sess.UserID, step, now)
		if errors.Is(err, storage.ErrNotFound) && h.endedMeanwhile(r) {
			return h.notEvaluated(ctx, claim, sess)
		}
		if err != nil && !errors.Is(err, storage.ErrReplay) {
			return pages.Internal("account: reauthentication", err)
		}
		if err == nil {
			h.trail.Event(ctx, "reauthenticated", sess.UserID, "", ClientID, "authenticator code")
			return &pages.SeeOther{URL: Path}
		}
		// A code already used (here or at a sign-in) is no proof.
	}
	h.guard.ReauthFailed(ctx, claim, "reauth_failed", sess.UserID, ClientID)
	if tries >= maxSessionReauthFailures {
		return h.endAfterWrongCodes(ctx, w, sess, tries)
	}
	return h.again(w, r, sess, http.StatusUnauthorized, pages.MsgWrongCode, "")
}

// maxSessionReauthFailures is how many wrong codes one session may prove
// again in a row before it ends.
const maxSessionReauthFailures = 3

// chargeSession counts a code about to be checked on sess's own count,
// before the account's claim and before the check (claim before check,
// docs/THREAT-MODEL.md rule 3): codes proven again here count on the
// sign-in's shared counter (the rule), so a session in the wrong
// hands (a whole cookie jar copied) could otherwise drive the owner's
// account to an operator-only lock. It gets maxSessionReauthFailures
// tries between proofs, however sent (at once, or with the connection
// dropped after each; reviews of issue 12, A-F3, C-F3, D-2, D-5); the
// count is the session's own, so someone failing at the login page
// cannot make the owner's typo end the owner's session. A proof starts
// it again (ReverifyTOTP, ReverifyRecovery, ReplaceTOTP). It returns the
// tries so far, this one included; past the limit it ends the session.
func (h *Handler) chargeSession(ctx context.Context, w http.ResponseWriter, sess storage.Session) (int, error) {
	n, err := h.store.CountReauthFailure(ctx, sess.IDHash, h.now())
	if errors.Is(err, storage.ErrNotFound) {
		return 0, &pages.Error{Status: http.StatusForbidden, Msg: "account.signed_out", What: "account: session ended", Back: Path}
	}
	if err != nil {
		return 0, pages.Internal("account: count a try", err)
	}
	if n > maxSessionReauthFailures {
		return n, h.endAfterWrongCodes(ctx, w, sess, n-1)
	}
	return n, nil
}

// endAfterWrongCodes ends sess after its wrong codes and says so.
func (h *Handler) endAfterWrongCodes(ctx context.Context, w http.ResponseWriter, sess storage.Session, wrong int) error {
	if _, err := h.store.SignOutSession(ctx, sess.IDHash, h.now()); err != nil {
		return pages.Internal("account: end a session after wrong codes", err)
	}
	h.login.ClearSSO(w)
	h.trail.Event(ctx, "session_ended_wrong_codes", sess.UserID, "", ClientID, fmt.Sprintf("%d wrong codes in this session", wrong))
	return &pages.Error{Status: http.StatusUnauthorized, Msg: "account.ended_wrong_codes", What: "account: session ended after wrong codes", Back: Path}
}

// changePassword takes the current password and the new one twice: the
// new one under the password rules (docs/THREAT-MODEL.md R-S5). The
// current one is a password attempt on the account's counter. Success
// ends every other session, device, sign-in in progress and token not
// issued through this session, and resets the second factor's counter
// (storage.Store.SetPassword).
func (h *Handler) changePassword(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	sess, u, done, err := h.change(w, r)
	if done || err != nil {
		return err
	}
	current, next, repeat := r.PostFormValue("current"), r.PostFormValue("new"), r.PostFormValue("repeat")
	if next != repeat {
		return h.again(w, r, sess, http.StatusBadRequest, pages.MsgPasswordsDiffer, "")
	}
	var weak *password.WeakError
	if err := h.passwords.Check(next, u.Username, u.Email); errors.As(err, &weak) {
		return h.again(w, r, sess, http.StatusBadRequest, pages.MsgWeak(string(weak.Reason)), "")
	} else if err != nil {
		return pages.Internal("account: password rules", err)
	}
	if done, err := h.currentPassword(w, r, sess, u, current, "password_change_failed"); done || err != nil {
		return err
	}
	if same, err := h.hasher.Verify(ctx, u.PasswordHash, next); err == nil && same {
		return h.again(w, r, sess, http.StatusBadRequest, pages.MsgSamePassword, "")
	}
	hash, err := h.hasher.Hash(ctx, next)
	if errors.Is(err, password.ErrBusy) {
		h.pages.Error(w, http.StatusServiceUnavailable, pages.MsgBusy, Path)
		return nil
	}
	if err != nil {
		return pages.Internal("account: hash password", err)
	}
	// This browser's session and remembered device stay (issue 12: every
	// other one ends; review A-F4).
	ended, err := h.store.SetPassword(ctx, u.ID, storage.PasswordChange{Hash: hash, Keep: sess.IDHash,
		KeepDevice: h.guard.PresentedDevice(r, u.ID), OldHash: u.PasswordHash}, h.now())
	if errors.Is(err, storage.ErrWrongState) {
		return &pages.Error{Status: http.StatusConflict, Msg: "account.changed_meanwhile", What: "account: password changed meanwhile", Back: Path}
	}
	if err != nil {
		return pages.Internal("account: store password", err)
	}
	h.trail.Event(h.notify.With(ctx, u.ID, mail.PasswordChanged, mail.HowAccount), "password_changed", u.ID, u.Username, ClientID, fmt.Sprintf("on the account page; ended %d other sessions, %d devices, %d sign-ins in progress, %d tokens",
		ended.Sessions, ended.Devices, ended.SignIns, ended.Tokens))
	return h.again(w, r, sess, http.StatusOK, "", "account.password_saved")
}

// endSessions ends one session (by its handle), every other one, or
// every one including this browser's.
func (h *Handler) endSessions(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	sess, _, done, err := h.change(w, r)
	if done || err != nil {
		return err
	}
	now := h.now()
	switch which := r.PostFormValue("which"); which {
	case "all":
		ended, err := h.store.EndUserSessions(ctx, sess.UserID, "", now)
		if err != nil {
			return pages.Internal("account: end sessions", err)
		}
		h.trail.Event(ctx, "sessions_ended", sess.UserID, "", ClientID, fmt.Sprintf("everywhere, this browser too: %d sessions, %d tokens", ended.Sessions, ended.Tokens))
		h.login.ClearSSO(w)
		return &pages.SeeOther{URL: login.LoggedOutPath}
	case "others", "one":
		sessions, err := h.store.Sessions(ctx, sess.UserID, now)
		if err != nil {
			return pages.Internal("account: sessions", err)
		}
		n := 0
		for _, s := range sessions {
			if bytes.Equal(s.IDHash, sess.IDHash) {
				continue
			}
			if which == "one" && subtle.ConstantTimeCompare([]byte(Handle(s.IDHash)), []byte(r.PostFormValue("session"))) != 1 {
				continue
			}
			// Offline grants too: the user ends that browser, not only
			// its front channel (review of the account page, F1).
			if _, err := h.store.SignOutSession(ctx, s.IDHash, now); err != nil {
				return pages.Internal("account: end session", err)
			}
			n++
		}
		if which == "one" && n == 0 {
			return h.again(w, r, sess, http.StatusNotFound, "account.no_such_session", "")
		}
		h.trail.Event(ctx, "sessions_ended", sess.UserID, "", ClientID, fmt.Sprintf("%s: %d sessions", which, n))
		return h.again(w, r, sess, http.StatusOK, "", "account.sessions_ended")
	default:
		return h.again(w, r, sess, http.StatusBadRequest, msgBadForm, "")
	}
}

// renewCodes makes a new set of recovery codes, shown once: the old set
// dies and every other session ends (storage.Store.RenewRecoveryCodes).
func (h *Handler) renewCodes(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	sess, u, done, err := h.change(w, r)
	if done || err != nil {
		return err
	}
	generation, err := strconv.ParseInt(r.PostFormValue("generation"), 10, 64)
	if err != nil {
		return h.again(w, r, sess, http.StatusBadRequest, msgBadForm, "")
	}
	if done, err := h.currentPassword(w, r, sess, u, r.PostFormValue("current"), "recovery_renewal_failed"); done || err != nil {
		return err
	}
	codes, hashes, err := totp.NewRecoveryCodes()
	if err != nil {
		return pages.Internal("account: recovery codes", err)
	}
	// Made against the generation the page showed: a resent or doubled
	// form changes nothing a second time (review of issue 12, A-F1).
	ended, err := h.store.RenewRecoveryCodes(ctx, sess.UserID, hashes, sess.IDHash, generation, h.now())
	if errors.Is(err, storage.ErrWrongState) {
		return &pages.Error{Status: http.StatusConflict, Msg: "account.changed_meanwhile", What: "account: codes changed meanwhile", Back: Path}
	}
	if err != nil {
		return pages.Internal("account: renew recovery codes", err)
	}
	h.trail.Event(h.notify.With(ctx, sess.UserID, mail.RecoveryCodesRenewed, mail.HowAccount), "recovery_codes_renewed", sess.UserID, "", ClientID, fmt.Sprintf("%d codes; ended %d other sessions, %d tokens",
		len(codes), ended.Sessions, ended.Tokens))
	h.showCodes(w, codes, "")
	return nil
}

// showCodes shows new recovery codes once, with a download of them and
// note (a message key) above.
func (h *Handler) showCodes(w http.ResponseWriter, codes []string, note string) {
	text := strings.Join(codes, "\n") + "\n"
	h.pages.Render(w, http.StatusOK, "newcodes", pages.Data{Title: "title.newcodes", Codes: codes, Message: note,
		DownloadURL: template.URL("data:text/plain;charset=utf-8," + url.PathEscape(text)), ContinueURL: Path})
}

// currentPassword checks the account's current password for a change of
// a factor: a password attempt on the account's shared counter, locked
// like a sign-in's (docs/THREAT-MODEL.md rules 1–4). A change of the
// second factor needs it too: a stolen session cookie, even within the
// reauthentication window, must not be enough to take the second factor
// over. done means the answer is written (a wrong password, a lock).
func (h *Handler) currentPassword(w http.ResponseWriter, r *http.Request, sess storage.Session, u storage.User, current, failEvent string) (done bool, err error) {
	ctx := r.Context()
	if len(current) > password.MaxBytes {
		return true, h.again(w, r, sess, http.StatusBadRequest, pages.MsgLongPassword, "")
	}
	// The hashing slot before the claim, as at sign-in (docs/THREAT-MODEL.md
	// rule 3): a busy hasher must not leave a right password counted as a
	// failure (review of the account page, F5).
	slot, err := h.hasher.Reserve(ctx)
	if err != nil {
		h.pages.Error(w, http.StatusServiceUnavailable, pages.MsgBusy, Path)
		return true, nil
	}
	defer slot.Release()
	claim, err := h.guard.Claim(ctx, u.ID, u.Username, ClientID, storage.FactorPassword)
	if err != nil {
		return true, pages.Internal("account: password claim", err)
	}
	if !claim.Allowed {
		return true, &pages.Locked{Retry: claim.RetryAfter, Hard: claim.HardLocked, Now: h.now(), Back: Path}
	}
	right, err := slot.Verify(u.PasswordHash, current)
	if err != nil {
		return true, pages.Internal("account: verify password", err)
	}
	if !right {
		h.guard.Failed(ctx, claim, failEvent, u.ID, u.Username, ClientID, storage.FactorPassword, "", "the current password was wrong")
		return true, h.again(w, r, sess, http.StatusUnauthorized, "account.wrong_current", "")
	}
	if err := h.guard.PasswordSucceeded(ctx, u.ID, claim, guard.Counter{}); err != nil {
		return true, pages.Internal("account: password success", err)
	}
	return false, nil
}

// change is the prologue of every change: a posted form with the page's
// token, a session whose second factor is fresh, and its user. done means
// the answer is written or returned.
func (h *Handler) change(w http.ResponseWriter, r *http.Request) (storage.Session, storage.User, bool, error) {
	sess, err := h.posted(r)
	if err != nil {
		return sess, storage.User{}, true, err
	}
	if !h.fresh(sess) {
		return sess, storage.User{}, true, h.again(w, r, sess, http.StatusForbidden, "account.verify_first", "")
	}
	u, err := h.store.UserByID(r.Context(), sess.UserID)
	if err != nil {
		return sess, u, true, pages.Internal("account: user", err)
	}
	return sess, u, false, nil
}
