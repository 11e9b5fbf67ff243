// Command idp is the identity provider: `idp serve` runs the OpenID
// provider; the other commands administer users, clients, keys and the
// audit trail of the same database.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/totp-idp/idp/op/admin"
	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
)

const usage = `idp: an OpenID Connect provider with password + TOTP login.

Usage:
  idp serve   [--config FILE] [--db PATH] [--issuer URL] [--listen ADDR] [--secret-key-file F] [--dev] [policy flags]
  idp user add USERNAME [--email E] [--name N] [--password-stdin] [--enroll-at-login] [--json]
  idp user list | show USERNAME | unlock USERNAME | reset-totp USERNAME | recovery-codes USERNAME | delete USERNAME
  idp user revoke-sessions USERNAME [--client ID]
  idp user update USERNAME [--email E] [--name N] [--email-verified] [--issuer URL] | set-password USERNAME [--must-change]
  idp user disable | enable | sessions USERNAME
  idp client add CLIENT_ID --redirect-uri URI [--redirect-uri URI …] [--post-logout-redirect-uri URI …]
                 [--name N] [--public] [--pkce=required|optional] [--json]
  idp client list | delete CLIENT_ID
  idp keys rotate [--activate-after D] | list | withdraw KID
  idp secrets rotate --new-key-file F
  idp audit [--user USERNAME] [--since TIME] [--limit N] [--json]
  idp mail queue [--failed] [--all] [--limit N] [--json] | retry [--json]
  idp migrate          apply the database's pending migrations

Every flag can also be set by an IDP_-prefixed environment variable
(--db → IDP_DB, --trusted-proxies → IDP_TRUSTED_PROXIES). Flags may stand
before or after positional arguments. --db defaults to ./idp.db; a
postgres:// or postgresql:// URL selects PostgreSQL.
Run "idp COMMAND -h" for the flags of a command.
`

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		var fe flagError
		if !errors.Is(err, flag.ErrHelp) && !errors.As(err, &fe) {
			fmt.Fprintln(os.Stderr, "idp:", err)
		}
		os.Exit(exitCode(err))
	}
}

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ msg string }

// flagError is a usage error the flag package has already printed, with
// the usage (review of issue 12, B-F8: it was printed twice, exit 1).
type flagError struct{ usageError }

func (e flagError) Unwrap() error { return e.usageError }

func (e usageError) Error() string { return e.msg }

// unaudited, deferred by an operator command, turns its success into the
// error of a change made without its audit row (exit status 3), once its
// answer is printed (review of issue 12, B-F2).
func unaudited(adm *admin.Admin, err *error) {
	if *err == nil {
		*err = adm.Unaudited()
	}
}

// exitCode: 2 for a usage error, 3 for a change made but not audited (do
// not retry it), 1 otherwise.
func exitCode(err error) int {
	if errors.Is(err, admin.ErrUnaudited) {
		return 3
	}
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

// env is what every command gets.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	switch args[0] {
	case "serve":
		return e.serve(ctx, args[1:])
	case "user":
		return e.user(ctx, args[1:])
	case "client":
		return e.client(ctx, args[1:])
	case "keys":
		return e.keys(ctx, args[1:])
	case "audit":
		return e.audit(ctx, args[1:])
	case "mail":
		return e.mail(ctx, args[1:])
	case "secrets":
		return e.secrets(ctx, args[1:])
	case "migrate":
		return e.migrate(ctx, args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
}

// newFlags returns a flag set with the flags every command shares.
func (e *env) newFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("idp "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	db := fs.String("db", "./idp.db", "SQLite database file, or a postgres:// URL (PG* variables and the password file complete it)")
	return fs, db
}

// newAdmin returns the operator API over an opened store. The CLI hashes
// passwords with the same OWASP argon2id parameters as the server.
func newAdmin(st storage.Store, sealer *seal.Sealer, product string) (*admin.Admin, error) {
	h, err := password.NewHasher(password.OWASP, 1, 0)
	if err != nil {
		return nil, err
	}
	// The audit row is the record; the CLI's log shows only problems.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return &admin.Admin{Store: st, Sealer: sealer, Hasher: h, Product: product, Log: log}, nil
}

func needArgs(pos []string, n int, what string) error {
	if len(pos) != n {
		return usageError{fmt.Sprintf("expected %s, got %q", what, strings.Join(pos, " "))}
	}
	return nil
}
