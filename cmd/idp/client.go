package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/totp-idp/idp/op/admin"
	"github.com/totp-idp/idp/storage"
)

func (e *env) client(ctx context.Context, args []string) (err error) {
	sub, args, err := subcommand("client", args, "add", "list", "delete")
	if err != nil {
		return err
	}
	fs, db := e.newFlags("client " + sub)
	var (
		redirects, logouts multiFlag
		name, pkce, secret string
		public, asJSON     bool
	)
	if sub == "add" {
		fs.Var(&redirects, "redirect-uri", "allowed redirect URI, matched exactly (repeatable)")
		fs.Var(&logouts, "post-logout-redirect-uri", "allowed post-logout redirect URI (repeatable)")
		fs.StringVar(&name, "name", "", "application name shown on the sign-in page")
		fs.BoolVar(&public, "public", false, "public client (no secret; PKCE always required)")
		fs.StringVar(&pkce, "pkce", "required", "PKCE for a confidential client: required or optional")
		fs.StringVar(&secret, "secret", "", "use this secret instead of a generated one (testing)")
	}
	if sub == "add" || sub == "list" {
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	}
	pos, err := parseArgs(fs, args, "")
	if err != nil {
		return err
	}
	if sub == "add" && pkce != "required" && pkce != "optional" {
		return usageError{"--pkce must be required or optional"}
	}
	st, err := openStore(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	adm := &admin.Admin{Store: st}
	defer unaudited(adm, &err)
	switch sub {
	case "add":
		if err := needArgs(pos, 1, "CLIENT_ID"); err != nil {
			return err
		}
		c, err := adm.AddClient(ctx, admin.NewClient{
			ID: pos[0], Name: name, RedirectURIs: redirects, PostLogoutRedirectURIs: logouts,
			Public: public, PKCEOptional: pkce == "optional", Secret: secret,
		})
		if errors.Is(err, storage.ErrConflict) {
			return fmt.Errorf("client %q already exists", pos[0])
		}
		if err != nil {
			return err
		}
		if asJSON {
			out := map[string]any{"client_id": c.ClientID}
			if c.ClientSecret != "" {
				out["client_secret"] = c.ClientSecret
			}
			return e.changed(adm, out)
		}
		fmt.Fprintf(e.stdout, "Created client %s.\n", printable(c.ClientID))
		if c.ClientSecret != "" {
			fmt.Fprintf(e.stdout, "Client secret (shown once, store it now): %s\n", c.ClientSecret)
		}
		return nil
	case "list":
		if err := needArgs(pos, 0, "no arguments"); err != nil {
			return err
		}
		list, err := st.ListClients(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			type row struct {
				ID           string   `json:"client_id"`
				Name         string   `json:"name,omitempty"`
				Public       bool     `json:"public"`
				PKCERequired bool     `json:"pkce_required"`
				RedirectURIs []string `json:"redirect_uris"`
				PostLogout   []string `json:"post_logout_redirect_uris"`
			}
			out := []row{}
			for _, c := range list {
				out = append(out, row{c.ID, c.Name, c.Public, c.PKCERequired, c.RedirectURIs, c.PostLogoutRedirectURIs})
			}
			return json.NewEncoder(e.stdout).Encode(out)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CLIENT_ID\tTYPE\tPKCE\tREDIRECT_URIS")
		for _, c := range list {
			typ, p := "confidential", "optional"
			if c.Public {
				typ = "public"
			}
			if c.PKCERequired {
				p = "required"
			}
			uris := make([]string, len(c.RedirectURIs))
			for i, u := range c.RedirectURIs {
				uris[i] = printable(u)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", printable(c.ID), typ, p, strings.Join(uris, " "))
		}
		return tw.Flush()
	case "delete":
		if err := needArgs(pos, 1, "CLIENT_ID"); err != nil {
			return err
		}
		if err := adm.DeleteClient(ctx, pos[0]); err != nil {
			return notFound("client", pos[0], err)
		}
		fmt.Fprintf(e.stdout, "Deleted client %s.\n", printable(pos[0]))
		return nil
	default:
		return usageError{fmt.Sprintf("idp client: unknown subcommand %q", sub)}
	}
}
