package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/totp-idp/idp/storage"
	"github.com/totp-idp/idp/storage/postgres"
	"github.com/totp-idp/idp/storage/sqlite"
)

// isPostgres reports whether --db names a PostgreSQL database (a
// postgres:// or postgresql:// URL) rather than a SQLite file.
func isPostgres(db string) bool {
	l := strings.ToLower(db)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// looksLikeURL reports a --db that is not a PostgreSQL URL but has a
// scheme (postgres:/…, pg://…): a mistyped URL, refused rather than
// opened as a SQLite file named after it, password included.
func looksLikeURL(db string) bool {
	scheme, _, found := strings.Cut(db, ":")
	return found && !isPostgres(db) && scheme != "" && !strings.ContainsAny(scheme, "/\\. ") && len(scheme) > 1
}

// redactDB is --db as it may be printed: a URL's user info password and
// every query parameter that is or may hold a secret replaced.
func redactDB(db string) string {
	if !isPostgres(db) {
		return db
	}
	u, err := url.Parse(db)
	if err != nil {
		return "postgres://…" // unparsable: print none of it
	}
	q := u.Query()
	for k := range q {
		if lk := strings.ToLower(k); strings.Contains(lk, "password") || strings.Contains(lk, "secret") || strings.Contains(lk, "key") {
			q.Set(k, "xxxxx")
		}
	}
	u.RawQuery = q.Encode()
	return u.Redacted()
}

// keywordValue reports a libpq keyword/value connection string
// ("host=… dbname=…"), which --db does not take: as a path it would be a
// SQLite file named after it, password included, that no other replica
// shares.
func keywordValue(db string) bool {
	for _, k := range []string{"host=", "hostaddr=", "dbname=", "user=", "password=", "port=", "sslmode=", "service="} {
		if strings.HasPrefix(strings.TrimSpace(db), k) || strings.Contains(db, " "+k) || strings.Contains(db, "\t"+k) {
			return true
		}
	}
	return false
}

// openStore opens the database --db names, applying pending migrations.
func openStore(ctx context.Context, db string) (storage.Store, error) {
	return openStoreWith(ctx, db, false)
}

// openStoreWith is openStore; with noMigrate a PostgreSQL database whose
// schema is not this program's is refused instead of migrated (idp serve
// --no-migrate, when `idp migrate` runs as a separate step).
func openStoreWith(ctx context.Context, db string, noMigrate bool) (storage.Store, error) {
	if isPostgres(db) {
		st, err := postgres.OpenWith(ctx, db, postgres.OpenOptions{NoMigrate: noMigrate})
		if err != nil {
			return nil, fmt.Errorf("open database %s: %w", redactDB(db), err)
		}
		return st, nil
	}
	if looksLikeURL(db) {
		return nil, usageError{"--db: only postgres:// and postgresql:// URLs are databases; anything else is a SQLite file path"}
	}
	if keywordValue(db) {
		return nil, usageError{"--db takes a SQLite file or a postgres:// URL, not a keyword/value connection string (write postgres://USER@HOST/DB?sslmode=…; PG* variables and the password file complete it)"}
	}
	if noMigrate {
		return nil, usageError{"--no-migrate applies to a PostgreSQL database; SQLite migrates when it opens"}
	}
	st, err := sqlite.Open(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", db, err)
	}
	return st, nil
}

// migrate is `idp migrate`: apply the pending migrations and say the
// schema is current.
func (e *env) migrate(ctx context.Context, args []string) error {
	fs, db := e.newFlags("migrate")
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
	if sc, ok := st.(storage.SchemaChecker); ok {
		if err := sc.SchemaCurrent(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "schema of %s is current\n", redactDB(*db))
	return nil
}
