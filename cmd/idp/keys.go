package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/totp-idp/idp/op"
	"github.com/totp-idp/idp/op/admin"
	"github.com/totp-idp/idp/storage"
)

func (e *env) keys(ctx context.Context, args []string) (err error) {
	sub, args, err := subcommand("keys", args, "rotate", "list", "withdraw")
	if err != nil {
		return err
	}
	fs, db := e.newFlags("keys " + sub)
	retention := fs.Duration("key-retention", 48*time.Hour, "how long a retired key stays in JWKS")
	var activateAfter *time.Duration
	if sub == "rotate" {
		activateAfter = fs.Duration("activate-after", op.DefaultKeyActivationDelay,
			"publish the new key now and sign with it after this long, so that cached JWKS answers learn it first (0: at once, for a compromised key)")
	}
	keyFile := fs.String("secret-key-file", "", "secret key that seals signing keys (default: DB.key if it exists)")
	pos, err := parseArgs(fs, args, "")
	if err != nil {
		return err
	}
	wantArgs, what := 0, "no arguments"
	if sub == "withdraw" {
		wantArgs, what = 1, "KID"
	}
	if err := needArgs(pos, wantArgs, what); err != nil {
		return err
	}
	st, err := openStore(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	now := func() time.Time { return time.Now().UTC() }
	switch sub {
	case "rotate":
		sealer, _, err := loadSealer(*keyFile, *db, false)
		if err != nil {
			return err
		}
		if err := sealer.Bind(ctx, st); err != nil {
			return err
		}
		if *activateAfter < 0 {
			return usageError{"--activate-after must not be negative"}
		}
		km := op.NewKeyManager(st, sealer, now, *retention)
		id, at, err := km.Rotate(ctx, *activateAfter)
		if err != nil {
			return err
		}
		adm := &admin.Admin{Store: st}
		adm.Audit(ctx, "signing_key_rotated", fmt.Sprintf("new kid %s, signs from %s", id, at.Format(time.RFC3339)))
		defer unaudited(adm, &err)
		fmt.Fprintf(e.stdout, "New signing key %s: running servers publish it in JWKS within 5 s and sign with it from %s (in %s); the current key signs until then and stays in JWKS for %s after.\n",
			id, at.Format(time.RFC3339), *activateAfter, *retention)
		if *activateAfter < op.JWKSMaxAge {
			fmt.Fprintf(e.stdout, "Warning: relying parties that cached JWKS in the last %s may reject tokens signed with the new key until they fetch it again.\n", op.JWKSMaxAge)
		}
		return nil
	case "list":
		keys, err := st.SigningKeys(ctx, now())
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KID\tALG\tSTATE\tCREATED\tPUBLISHED_UNTIL")
		t := now()
		signing, _ := storage.SigningKeyAt(keys, t)
		for _, k := range keys {
			state, until := "published", "-"
			switch {
			case k.ID == signing.ID && !k.RetiredAt.IsZero():
				state = "active, until " + k.RetiredAt.Format(time.RFC3339)
			case k.ID == signing.ID:
				state = "active"
			case k.RetiredAt.IsZero() && k.ActivatesAt.After(t):
				state = "next, signs from " + k.ActivatesAt.Format(time.RFC3339)
			case !k.RetiredAt.After(t):
				state = "retired " + k.RetiredAt.Format(time.RFC3339)
			default: // replaced by a key activated before its own retirement
				state = "superseded"
			}
			if !k.ExpiresAt.IsZero() {
				until = k.ExpiresAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, state, k.CreatedAt.Format(time.RFC3339), until)
		}
		return tw.Flush()
	case "withdraw":
		// A compromised key must stop verifying at once: it leaves JWKS
		// now instead of after the retention, and never signs again.
		kid := pos[0]
		keys, err := st.SigningKeys(ctx, now())
		if err != nil {
			return err
		}
		if signing, ok := storage.SigningKeyAt(keys, now()); ok && signing.ID == kid {
			return fmt.Errorf("key %s signs now: first make another key sign (idp keys rotate --activate-after 0), then withdraw %s", kid, kid)
		}
		for _, k := range keys {
			if k.ID == kid && k.ActivatesAt.After(now()) {
				// The current key retires when this one activates:
				// withdrawing it would leave no key to sign then.
				return fmt.Errorf("key %s is the next key (signs from %s): run idp keys rotate --activate-after 0 to replace it, then withdraw it", kid, k.ActivatesAt.Format(time.RFC3339))
			}
		}
		if err := st.WithdrawSigningKey(ctx, kid, now()); err != nil {
			return notFound("signing key", kid, err)
		}
		adm := &admin.Admin{Store: st}
		adm.Audit(ctx, "signing_key_withdrawn", "kid "+kid)
		defer unaudited(adm, &err)
		fmt.Fprintf(e.stdout, "Withdrew signing key %s: running servers drop it from JWKS within 5 s and it signs nothing again. Relying parties that cached JWKS may still accept tokens it signed for up to %s; ID tokens it signed stop verifying everywhere after that.\n", kid, op.JWKSMaxAge)
		return nil
	default:
		return usageError{fmt.Sprintf("idp keys: unknown subcommand %q", sub)}
	}
}
