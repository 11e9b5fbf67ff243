package account

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/boombuler/barcode/qr"

	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/op/totp"
	"github.com/totp-idp/idp/storage"
)

const (
	AuthenticatorPath = Path + "/authenticator"
	ConfirmPath       = Path + "/authenticator/confirm"
	// pendingLifetime bounds how long a new secret offered on the page
	// may be confirmed.
	pendingLifetime = 10 * time.Minute
)

// pendingAAD binds a new secret offered on the page to the session, the
// user it was offered to and the authenticator it would replace: a form
// field of another session or account does not open, nor does one whose
// replacement already happened (its replay; review of the account page,
// F3).
// The authenticator's generation, which ReplaceTOTP checks under its
// transaction, makes two confirmations of one offer (a double click) or
// of two offers end with one winner (review of issue 12, A-F1).
func pendingAAD(sess storage.Session, current storage.TOTPCredential) string {
	return fmt.Sprintf("account-totp-pending:v2:%s:%s:%d:%d", sess.UserID, Handle(sess.IDHash), current.CreatedAt.Unix(), current.Generation)
}

// newAuthenticator offers a new secret (a QR code and the key to type)
// for the user to add to their app; nothing changes until a code from it
// confirms it. The secret travels sealed in the form (with the time it was
// made), so no half-made authenticator is stored anywhere.
func (h *Handler) newAuthenticator(w http.ResponseWriter, r *http.Request) error {
	sess, u, done, err := h.change(w, r)
	if done || err != nil {
		return err
	}
	if done, err := h.currentPassword(w, r, sess, u, r.PostFormValue("current"), "new_totp_password_failed"); done || err != nil {
		return err
	}
	current, err := h.store.TOTPByUser(r.Context(), sess.UserID)
	if err != nil {
		return pages.Internal("account: authenticator", err)
	}
	secret, err := totp.NewSecret()
	if err != nil {
		return pages.Internal("account: new secret", err)
	}
	plain := binary.BigEndian.AppendUint64(nil, uint64(h.now().Unix()))
	sealed, err := h.sealer.Seal(r.Context(), pendingAAD(sess, current), append(plain, secret...))
	if err != nil {
		return pages.Internal("account: seal new secret", err)
	}
	return h.offer(w, r, sess, secret, base64.RawURLEncoding.EncodeToString(sealed), http.StatusOK, "")
}

// offer shows the new secret's page.
func (h *Handler) offer(w http.ResponseWriter, r *http.Request, sess storage.Session, secret []byte, pending string, status int, msg string) error {
	u, err := h.store.UserByID(r.Context(), sess.UserID)
	if err != nil {
		return pages.Internal("account: user", err)
	}
	key, err := totp.Key(h.product, u.Username, secret)
	if err != nil {
		return pages.Internal("account: totp key", err)
	}
	svg, err := qrSVG(key.URL())
	if err != nil {
		return pages.Internal("account: qr", err)
	}
	h.pages.Render(w, status, "newtotp", pages.Data{Title: "title.newtotp", CSRF: formToken(h.login.SSOCookie(r)), Error: msg,
		QRSVG: svg, Secret: totp.GroupKey(key.Secret()), Fields: []pages.Field{{Name: "pending", Value: pending}}})
	return nil
}

// confirmAuthenticator takes a code from the new secret: the code counts
// on the account's TOTP counter like any; a right one replaces the
// authenticator and the recovery codes at once (storage.Store.ReplaceTOTP)
// and shows the new codes once.
func (h *Handler) confirmAuthenticator(w http.ResponseWriter, r *http.Request) error {
	// As verify: every write from the count on is made (review D-2).
	r = r.WithContext(context.WithoutCancel(r.Context()))
	ctx := r.Context()
	// The window holds here too: the proof that opened the offer must
	// still be fresh when the offer is taken.
	sess, _, done, err := h.change(w, r)
	if done || err != nil {
		return err
	}
	raw, err := base64.RawURLEncoding.DecodeString(r.PostFormValue("pending"))
	if err != nil {
		return &pages.Error{Status: http.StatusBadRequest, Msg: msgBadForm, What: "account: pending secret", Back: Path}
	}
	current, err := h.store.TOTPByUser(ctx, sess.UserID)
	if err != nil {
		return pages.Internal("account: authenticator", err)
	}
	plain, err := h.sealer.Open(pendingAAD(sess, current), raw)
	if err != nil || len(plain) < 8 {
		return &pages.Error{Status: http.StatusBadRequest, Msg: msgBadForm, What: "account: pending secret", Back: Path}
	}
	made := time.Unix(int64(binary.BigEndian.Uint64(plain[:8])), 0)
	secret := plain[8:]
	if h.now().Sub(made) > pendingLifetime || made.After(h.now().Add(time.Minute)) {
		return h.again(w, r, sess, http.StatusForbidden, "account.new_totp_expired", "")
	}
	code, ok := totp.Normalize(r.PostFormValue("code"))
	if !ok {
		return h.offer(w, r, sess, secret, r.PostFormValue("pending"), http.StatusBadRequest, pages.MsgBadCode)
	}
	tries, err := h.chargeSession(ctx, w, sess)
	if err != nil {
		return err
	}
	claim, err := h.guard.Claim(ctx, sess.UserID, "", ClientID, storage.FactorTOTP)
	if err != nil {
		return pages.Internal("account: new authenticator claim", err)
	}
	if !claim.Allowed {
		return &pages.Locked{Retry: claim.RetryAfter, Hard: claim.HardLocked, Now: h.now(), Back: Path}
	}
	now := h.now()
	step, match := totp.Match(secret, code, now)
	if !match {
		h.guard.ReauthFailed(ctx, claim, "new_totp_failed", sess.UserID, ClientID)
		if tries >= maxSessionReauthFailures {
			return h.endAfterWrongCodes(ctx, w, sess, tries)
		}
		return h.offer(w, r, sess, secret, r.PostFormValue("pending"), http.StatusUnauthorized, pages.MsgWrongCode)
	}
	sealed, err := h.sealer.Seal(ctx, seal.AADTOTP(sess.UserID), secret)
	if err != nil {
		return pages.Internal("account: seal authenticator", err)
	}
	codes, hashes, err := totp.NewRecoveryCodes()
	if err != nil {
		return pages.Internal("account: recovery codes", err)
	}
	cred := storage.TOTPCredential{UserID: sess.UserID, Secret: sealed, Confirmed: true, LastStep: step, Generation: current.Generation}
	ended, err := h.store.ReplaceTOTP(ctx, cred, hashes, sess.IDHash, now)
	if errors.Is(err, storage.ErrWrongState) {
		if !h.endedMeanwhile(r) && h.sameOfferWon(ctx, sess.UserID, secret) {
			// The code was right and a confirmation of this very offer won
			// (a double click): its claim is given back, as at a sign-in
			// whose flow moved on, so the owner's non-refilling budget
			// does not pay for it (review C-F1). Only then: after another
			// offer or a renewal of the codes won, a code of a key the
			// session made itself proves nothing about the account's
			// (review D-4).
			if err := h.guard.CodeSucceeded(ctx, sess.UserID, claim); err != nil {
				return pages.Internal("account: give back a right code's claim", err)
			}
			if err := h.store.ReturnReauthTry(ctx, sess.IDHash); err != nil {
				return pages.Internal("account: give back a right code's try", err)
			}
			h.trail.Event(ctx, "new_totp_confirmed_twice", sess.UserID, "", ClientID, "the second confirmation's claim given back")
		} else {
			h.guard.NotEvaluated(ctx, claim, "new_totp_not_evaluated", sess.UserID, ClientID)
		}
		return &pages.Error{Status: http.StatusConflict, Msg: "account.changed_meanwhile", What: "account: authenticator or session changed meanwhile", Back: Path}
	}
	if err != nil {
		return pages.Internal("account: replace authenticator", err)
	}
	h.trail.Event(h.notify.With(ctx, sess.UserID, mail.AuthenticatorReplaced, mail.HowAccount), "totp_replaced", sess.UserID, "", ClientID, fmt.Sprintf("on the account page; %d recovery codes; ended %d other sessions, %d tokens",
		len(codes), ended.Sessions, ended.Tokens))
	h.showCodes(w, codes, "newtotp.done")
	return nil
}

// sameOfferWon reports whether the user's authenticator is now the key
// secret, that is, a confirmation of the same offer won.
func (h *Handler) sameOfferWon(ctx context.Context, userID string, secret []byte) bool {
	cred, err := h.store.TOTPByUser(ctx, userID)
	if err != nil || !cred.Confirmed {
		return false
	}
	key, err := h.sealer.Open(seal.AADTOTP(userID), cred.Secret)
	return err == nil && subtle.ConstantTimeCompare(key, secret) == 1
}

// qrSVG draws text as a QR code in inline SVG: the pages' policy loads
// nothing but their own origin, and an inline drawing needs no request.
// Only module coordinates go into it, never the text.
func qrSVG(text string) (template.HTML, error) {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return "", err
	}
	n := code.Bounds().Dx()
	const quiet = 4
	var path strings.Builder
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			if r, _, _, _ := code.At(x, y).RGBA(); r < 0x8000 {
				fmt.Fprintf(&path, "M%d %dh1v1h-1z", x+quiet, y+quiet)
			}
		}
	}
	size := n + 2*quiet
	return template.HTML(fmt.Sprintf(`<svg class="qr" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="200" height="200" role="img" aria-labelledby="qr-title" shape-rendering="crispEdges"><title id="qr-title">QR code</title><rect width="%d" height="%d" fill="#fff"/><path d="%s" fill="#000"/></svg>`,
		size, size, size, size, path.String())), nil
}
