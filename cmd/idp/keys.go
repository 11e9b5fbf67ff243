package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/totp-idp/idp/op"
)

func (e *env) keys(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError{"idp keys: expected rotate or list"}
	}
	sub, args := args[0], args[1:]
	fs, db := e.newFlags("keys " + sub)
	retention := fs.Duration("key-retention", 48*time.Hour, "how long a retired key stays in JWKS")
	keyFile := fs.String("secret-key-file", "", "secret key that seals signing keys (default: DB.key if it exists)")
	pos, err := parseArgs(fs, args, "")
	if err != nil {
		return err
	}
	if err := needArgs(pos, 0, "no arguments"); err != nil {
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
		km := op.NewKeyManager(st, sealer, now, *retention)
		id, err := km.Rotate(ctx)
		if err != nil {
			return err
		}
		(&op.Admin{Store: st}).Audit(ctx, "signing_key_rotated", "new kid "+id)
		fmt.Fprintf(e.stdout, "New signing key %s is active; running servers pick it up within 5 s. Retired keys stay in JWKS for %s.\n", id, *retention)
		return nil
	case "list":
		keys, err := st.SigningKeys(ctx, now())
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KID\tALG\tSTATE\tCREATED\tPUBLISHED_UNTIL")
		for _, k := range keys {
			state, until := "active", "-"
			if !k.RetiredAt.IsZero() {
				state = "retired " + k.RetiredAt.Format(time.RFC3339)
				until = k.ExpiresAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, state, k.CreatedAt.Format(time.RFC3339), until)
		}
		return tw.Flush()
	default:
		return usageError{fmt.Sprintf("idp keys: unknown subcommand %q", sub)}
	}
}
