package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The PostgreSQL server the tests use, as storage/postgres's tests do: a
// postgres:// URL of a role that may create databases. Unset, the tests
// that need it skip, unless IDP_TEST_POSTGRES_REQUIRED=1 (.ci/run).
const (
	envPostgresURL      = "IDP_TEST_POSTGRES_URL"
	envPostgresRequired = "IDP_TEST_POSTGRES_REQUIRED"
)

func isPostgresURL(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// postgresKeys maps a PostgreSQL database URL to its secret key file:
// there is no file beside a URL, and every process on the database (each
// replica, each CLI call) must be given the same key.
var postgresKeys sync.Map

// keyEnv is the environment of an idp process on db: the caller's, with
// IDP_SECRET_KEY_FILE for a PostgreSQL database (nil: inherit as is).
func keyEnv(db string) []string {
	k, ok := postgresKeys.Load(db)
	if !ok {
		return nil
	}
	return append(os.Environ(), "IDP_SECRET_KEY_FILE="+k.(string))
}

// PostgresDB creates an empty database idp_e2e_<random> on the test
// server with a secret key file of its own, drops it when t ends (WITH
// (FORCE): servers still connected), and returns its URL for --db.
func PostgresDB(t testing.TB) string {
	t.Helper()
	server := os.Getenv(envPostgresURL)
	if server == "" {
		if os.Getenv(envPostgresRequired) == "1" {
			t.Fatalf("%s is not set but %s=1: this test needs a PostgreSQL server", envPostgresURL, envPostgresRequired)
		}
		t.Skipf("no PostgreSQL server: set %s (e.g. postgres:///postgres?host=/run/postgresql) to run this test", envPostgresURL)
	}
	u, err := url.Parse(server)
	if err != nil || !isPostgresURL(server) {
		t.Fatalf("%s must be a postgres:// URL: %v", envPostgresURL, err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "idp_e2e_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatalf("connect to %s: %v", envPostgresURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, server); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			conn.Close(ctx)
		}
	})
	u.Path = "/" + name
	db := u.String()
	key := filepath.Join(t.TempDir(), "idp.key")
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	if err := os.WriteFile(key, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	postgresKeys.Store(db, key)
	return db
}
