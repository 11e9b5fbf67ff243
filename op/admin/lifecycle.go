package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/totp-idp/idp/op/account"
	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/storage"
)

// SetPassword gives the user a new password chosen by the operator, under
// the password rules unless allowWeak (audited). It ends every session,
// device, sign-in in progress and token of the user (storage.Store.SetPassword
// with nothing kept) and resets the second factor's counter. With
// mustChange the user chooses their own password after both factors of the
// next sign-in, before any code.
func (a *Admin) SetPassword(ctx context.Context, name, pw string, mustChange, allowWeak bool) (storage.User, storage.Ended, error) {
	u, err := a.UserByName(ctx, name)
	if err != nil {
		return u, storage.Ended{}, err
	}
	if err := a.checkPassword(pw, u.Username, u.Email, allowWeak); err != nil {
		return u, storage.Ended{}, err
	}
	hash, err := a.Hasher.Hash(ctx, pw)
	if err != nil {
		return u, storage.Ended{}, err
	}
	ended, err := a.Store.SetPassword(ctx, u.ID, storage.PasswordChange{Hash: hash, MustChange: mustChange}, a.now())
	if err != nil {
		return u, ended, err
	}
	var detail []string
	if mustChange {
		detail = append(detail, "must change at next sign-in")
	}
	if allowWeak {
		detail = append(detail, "password rules skipped (--allow-weak)")
	}
	detail = append(detail, "ended "+EndedText(ended))
	a.audit(a.Notify.With(ctx, u.ID, mail.PasswordChanged, mail.HowOperator), "password_set", u.ID, u.Username, "", strings.Join(detail, "; "))
	return u, ended, nil
}

// SetDisabled disables the account (ending everything it is signed in
// with) or enables it again.
func (a *Admin) SetDisabled(ctx context.Context, name string, disabled bool) (storage.User, storage.Ended, error) {
	u, err := a.UserByName(ctx, name)
	if err != nil {
		return u, storage.Ended{}, err
	}
	ended, err := a.Store.SetDisabled(ctx, u.ID, disabled, a.now())
	if err != nil {
		return u, ended, err
	}
	if disabled {
		a.audit(ctx, "user_disabled", u.ID, u.Username, "", "ended "+EndedText(ended))
	} else {
		a.audit(ctx, "user_enabled", u.ID, u.Username, "", EndedText(ended))
	}
	return u, ended, nil
}

// UpdateUser changes the profile fields set in up; linkSent says a new,
// unverified address was mailed its verification link.
func (a *Admin) UpdateUser(ctx context.Context, name string, up storage.UserUpdate) (u storage.User, linkSent bool, err error) {
	u, err = a.UserByName(ctx, name)
	if err != nil {
		return u, false, err
	}
	if up.Email != nil {
		if err := CheckEmail(*up.Email); err != nil {
			return u, false, err
		}
		if *up.Email != u.Email && up.EmailVerified == nil {
			// A new address is not verified because the old one was
			// (the email_verified claim; review of issue 12, F4).
			no := false
			up.EmailVerified = &no
		}
	}
	if up.Name != nil {
		if err := checkName(*up.Name); err != nil {
			return u, false, err
		}
	}
	if up.EmailVerified != nil && *up.EmailVerified {
		addr := u.Email
		if up.Email != nil {
			addr = *up.Email
		}
		if err := a.verifiedElsewhere(ctx, u.ID, addr); err != nil {
			return u, false, err
		}
	}
	if err := a.Store.UpdateUser(ctx, u.ID, up); err != nil {
		return u, false, err
	}
	var changed []string
	if up.Name != nil {
		changed = append(changed, "name")
	}
	if up.Email != nil {
		changed = append(changed, "email")
	}
	if up.EmailVerified != nil {
		changed = append(changed, fmt.Sprintf("email_verified=%t", *up.EmailVerified))
	}
	if up.Email != nil && *up.Email != u.Email && u.EmailVerified {
		// The old, verified address hears of the change, in case it was
		// not the user's doing (issue 13, item 3).
		ctx = a.Notify.WithTo(ctx, u, u.Email, mail.EmailChanged, mail.Mask(*up.Email), mail.HowOperator)
	}
	a.audit(ctx, "user_updated", u.ID, u.Username, "", strings.Join(changed, ", "))
	now, err := a.Store.UserByID(ctx, u.ID)
	if err != nil {
		return now, false, err
	}
	if up.Email != nil && *up.Email != u.Email && now.Email != "" && !now.EmailVerified && a.Notify != nil && a.Issuer != "" {
		// The new address gets its verification link (issue 13, item 3).
		switch err := a.Notify.SendLink(ctx, now, now.Email, storage.LinkVerifyEmail, strings.TrimSuffix(a.Issuer, "/")+account.VerifyEmailPath); {
		case err == nil:
			a.audit(ctx, "email_verification_sent", u.ID, u.Username, "", "to "+mail.Mask(now.Email)+", by operator")
			linkSent = true
		case errors.Is(err, storage.ErrLimited):
		default:
			return now, false, fmt.Errorf("the address is changed, but its verification link was not sent: %w", err)
		}
	}
	return now, linkSent, nil
}

// ErrVerifiedElsewhere: another account has the address verified; one
// verified address belongs to one account (a reset link goes to it).
var ErrVerifiedElsewhere = errors.New("another account has this e-mail address verified")

// verifiedElsewhere is ErrVerifiedElsewhere when an account other than
// userID has addr verified (case-insensitive).
func (a *Admin) verifiedElsewhere(ctx context.Context, userID, addr string) error {
	if addr == "" {
		return nil
	}
	others, err := a.Store.UsersByVerifiedEmail(ctx, addr, 2)
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.ID != userID {
			return fmt.Errorf("%w (%s)", ErrVerifiedElsewhere, o.Username)
		}
	}
	return nil
}

// SignedIn is what a user is signed in with: SSO sessions and remembered
// devices.
type SignedIn struct {
	Sessions []storage.Session
	Devices  []storage.Device
}

// UserSessions lists the user's live sessions and devices.
func (a *Admin) UserSessions(ctx context.Context, name string, now time.Time) (storage.User, SignedIn, error) {
	u, err := a.UserByName(ctx, name)
	if err != nil {
		return u, SignedIn{}, err
	}
	var si SignedIn
	if si.Sessions, err = a.Store.Sessions(ctx, u.ID, now); err != nil {
		return u, si, err
	}
	si.Devices, err = a.Store.Devices(ctx, u.ID, now)
	return u, si, err
}

// maxName and maxEmail bound the profile fields (RFC 5321 §4.5.3.1.3 for
// the address's 254 octets).
const (
	maxName  = 200
	maxEmail = 254
)

// CheckEmail refuses what is not one bare address (no display name, no
// control or format characters; mail.Address, the rule mail is sent by);
// "" clears the address.
func CheckEmail(e string) error {
	if e == "" {
		return nil
	}
	if _, err := mail.Address(e); err != nil {
		return fmt.Errorf("e-mail address %q: one plain address (name@example.com), at most %d bytes, printable characters only", e, maxEmail)
	}
	return nil
}

func checkName(n string) error {
	if utf8.RuneCountInString(n) > maxName || !storage.Printable(n) {
		return fmt.Errorf("name: at most %d characters, printable characters only", maxName)
	}
	return nil
}
