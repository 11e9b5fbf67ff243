package main

import (
	"context"
	"strings"
	"testing"
)

// TestRedactDB: a database URL is printed without its password, in the
// user info or the query; a SQLite path is printed as it is.
func TestRedactDB(t *testing.T) {
	for in, want := range map[string]string{
		"./idp.db": "./idp.db",
		"postgres://idp:s3cret@db.example:5432/idp?sslmode=verify-full": "postgres://idp:xxxxx@db.example:5432/idp?sslmode=verify-full",
		"postgresql:///idp?host=/run/pg&password=s3cret":                "postgresql:///idp?host=%2Frun%2Fpg&password=xxxxx",
		"postgres://%zz": "postgres://…",
		"postgres://u@h/db?sslpassword=s3cret&sslkey=/k": "postgres://u@h/db?sslkey=xxxxx&sslpassword=xxxxx",
	} {
		got := redactDB(in)
		if got != want || strings.Contains(got, "s3cret") {
			t.Errorf("redactDB(%q) = %q, want %q", in, got, want)
		}
	}
	if isPostgres("postgres.db") || !isPostgres("postgresql://x") {
		t.Error("isPostgres")
	}
	for _, kv := range []string{"host=localhost user=postgres password=s3cret dbname=idp", "dbname=idp"} {
		if _, err := openStoreWith(context.Background(), kv, false); err == nil || !strings.Contains(err.Error(), "keyword/value") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("--db %q: %v", kv, err)
		}
	}
	if !isPostgres("POSTGRES://u@h/db") {
		t.Error("an upper-case scheme is not PostgreSQL")
	}
	for _, bad := range []string{"postgres:/u:pw@h/db", "pg://u:pw@h/db", "\thost=h password=pw"} {
		if _, err := openStoreWith(context.Background(), bad, false); err == nil || strings.Contains(err.Error(), "pw") {
			t.Errorf("--db %q: %v", bad, err)
		}
	}
	if looksLikeURL("./idp.db") || looksLikeURL("/var/lib/idp/idp.db") || looksLikeURL("C:\\idp\\idp.db") {
		t.Error("a path taken for a URL")
	}
	if keywordValue("./idp.db") || keywordValue("/var/lib/idp/host=1.db") {
		t.Error("a SQLite path taken for a connection string")
	}
}
