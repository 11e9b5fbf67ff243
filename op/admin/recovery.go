package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/totp-idp/idp/op/audit"
	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/op/totp"
	"github.com/totp-idp/idp/storage"
)

// ErrNoAuthenticator: the account has no confirmed authenticator, so a
// recovery code would stand in for nothing; it gets codes when it enrolls.
var ErrNoAuthenticator = errors.New("the account has no authenticator yet; recovery codes are issued when it enrolls")

// RegenerateRecoveryCodes replaces the user's recovery codes (the old set
// stops working) and returns the new ones to show once. An account without
// a confirmed authenticator gets none (ErrNoAuthenticator). A new set is
// issued because the old one may be known, so whoever signed in with it is
// signed out: every SSO session and token of the user ends in the same
// transaction.
func (a *Admin) RegenerateRecoveryCodes(ctx context.Context, name string) (storage.User, []string, storage.Ended, error) {
	u, err := a.UserByName(ctx, name)
	if err != nil {
		return u, nil, storage.Ended{}, err
	}
	if c, err := a.Store.TOTPByUser(ctx, u.ID); errors.Is(err, storage.ErrNotFound) || err == nil && !c.Confirmed {
		return u, nil, storage.Ended{}, ErrNoAuthenticator
	} else if err != nil {
		return u, nil, storage.Ended{}, err
	}
	codes, hashes, err := totp.NewRecoveryCodes()
	if err != nil {
		return u, nil, storage.Ended{}, err
	}
	e, err := a.Store.ReplaceRecoveryCodes(ctx, u.ID, hashes, a.now())
	if err != nil {
		return u, nil, e, err
	}
	a.audit(a.Notify.With(ctx, u.ID, mail.RecoveryCodesRenewed, mail.HowOperator), "recovery_codes_regenerated", u.ID, u.Username, "", "by operator; "+endedText(e))
	return u, codes, e, nil
}

// ResetTOTP removes the user's authenticator and recovery codes; the next
// login, after a correct password, enrolls a new one, within the server's
// Config.EnrollWithin from now (for an account already waiting to enroll it
// opens a new window). Whoever holds a session or token from the old factor
// is signed out in the same transaction.
func (a *Admin) ResetTOTP(ctx context.Context, name string) (storage.User, storage.Ended, error) {
	u, err := a.UserByName(ctx, name)
	if err != nil {
		return u, storage.Ended{}, err
	}
	e, err := a.Store.DeleteTOTP(ctx, u.ID, a.now())
	if err != nil {
		return u, e, err
	}
	a.audit(a.Notify.With(ctx, u.ID, mail.AuthenticatorRemoved), "totp_reset", u.ID, u.Username, "", "by operator; enrollment at next login; "+endedText(e))
	return u, e, nil
}

// RevokeSessions ends the user's SSO sessions and revokes every token
// (offline grants too); with clientID, only the tokens at that client.
func (a *Admin) RevokeSessions(ctx context.Context, name, clientID string) (storage.User, storage.Ended, error) {
	u, err := a.UserByName(ctx, name)
	if err != nil {
		return u, storage.Ended{}, err
	}
	if clientID != "" {
		if _, err := a.Store.ClientByID(ctx, clientID); errors.Is(err, storage.ErrNotFound) {
			return u, storage.Ended{}, fmt.Errorf("client %q not found", clientID)
		} else if err != nil {
			return u, storage.Ended{}, err
		}
	}
	e, err := a.Store.EndUserSessions(ctx, u.ID, clientID, a.now())
	if err != nil {
		return u, e, err
	}
	a.audit(ctx, "sessions_revoked", u.ID, u.Username, clientID, "by operator; "+endedText(e))
	return u, e, nil
}

// EndedText says what an action ended, for the CLI and the audit trail.
func EndedText(e storage.Ended) string { return endedText(e) }

func endedText(e storage.Ended) string {
	return audit.Plural(e.Sessions, "SSO session") + " ended, " + audit.Plural(e.Tokens, "token") + " revoked, " +
		audit.Plural(e.SignIns, "sign-in in progress", "sign-ins in progress") + " cancelled, " +
		audit.Plural(e.Devices, "remembered device") + " forgotten"
}

// RotateSecrets re-seals every secret of the database under newKey in one
// transaction and returns how many values were rewritten. Values that do
// not open with the current key abort the rotation unchanged.
func (a *Admin) RotateSecrets(ctx context.Context, newKey []byte) (int, error) {
	newID := seal.KeyID(newKey)
	n, err := a.Store.ReencryptSecrets(ctx, func(kind storage.SecretKind, id string, sealed []byte) ([]byte, error) {
		aad, err := seal.AADFor(kind, id)
		if err != nil {
			return nil, err
		}
		plain, err := a.Sealer.Open(aad, sealed)
		if err != nil {
			return nil, err
		}
		return seal.WithKey(newKey, aad, plain)
	})
	if err != nil {
		return 0, err
	}
	a.audit(ctx, "secrets_rotated", "", "", "", "new key "+newID)
	return n, nil
}
