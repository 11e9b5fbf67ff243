package main

import (
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
	} {
		got := redactDB(in)
		if got != want || strings.Contains(got, "s3cret") {
			t.Errorf("redactDB(%q) = %q, want %q", in, got, want)
		}
	}
	if isPostgres("postgres.db") || !isPostgres("postgresql://x") {
		t.Error("isPostgres")
	}
}
