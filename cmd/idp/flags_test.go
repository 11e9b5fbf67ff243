package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func newTestFlags() (*flag.FlagSet, *string, *string, *multiFlag) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	db := fs.String("db", "./idp.db", "")
	cfg := fs.String("config", "", "")
	var uris multiFlag
	fs.Var(&uris, "redirect-uri", "")
	return fs, db, cfg, &uris
}

func TestParseArgsFlagsAfterPositionals(t *testing.T) {
	fs, db, _, uris := newTestFlags()
	pos, err := parseArgs(fs, []string{"alice", "--db", "x.db", "--redirect-uri", "a", "bob", "--redirect-uri=b"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pos, []string{"alice", "bob"}) || *db != "x.db" || !reflect.DeepEqual([]string(*uris), []string{"a", "b"}) {
		t.Errorf("pos %v db %q uris %v", pos, *db, *uris)
	}
}

func TestParseArgsPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "idp.conf")
	if err := os.WriteFile(cfgFile, []byte("# comment\ndb = from-config.db\nredirect-uri = c1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Environment beats the config file.
	t.Setenv("IDP_DB", "from-env.db")
	fs, db, _, uris := newTestFlags()
	if _, err := parseArgs(fs, []string{"--config", cfgFile}, "config"); err != nil {
		t.Fatal(err)
	}
	if *db != "from-env.db" || !reflect.DeepEqual([]string(*uris), []string{"c1"}) {
		t.Errorf("db %q uris %v", *db, *uris)
	}
	// The command line beats the environment.
	fs, db, _, _ = newTestFlags()
	if _, err := parseArgs(fs, []string{"--db", "cli.db"}, "config"); err != nil {
		t.Fatal(err)
	}
	if *db != "cli.db" {
		t.Errorf("db %q", *db)
	}
	// Multi-value flags split on commas from the environment.
	t.Setenv("IDP_REDIRECT_URI", "e1, e2")
	fs, _, _, uris = newTestFlags()
	if _, err := parseArgs(fs, nil, ""); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual([]string(*uris), []string{"e1", "e2"}) {
		t.Errorf("uris %v", *uris)
	}
}

func TestParseArgsConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"unknown": "nope = 1\n", "noequals": "db\n"} {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, []byte(content), 0o600)
		fs, _, _, _ := newTestFlags()
		if _, err := parseArgs(fs, []string{"--config", p}, "config"); err == nil {
			t.Errorf("%s: config accepted", name)
		}
	}
	fs, _, _, _ := newTestFlags()
	if _, err := parseArgs(fs, []string{"--config", filepath.Join(dir, "missing")}, "config"); err == nil {
		t.Error("missing config file accepted")
	}
}

func TestParseSince(t *testing.T) {
	now := mustTime(t, "2026-11-28T12:00:00Z")
	cases := map[string]string{"24h": "2026-11-27T12:00:00Z", "2026-11-01": "2026-11-01T00:00:00Z", "2026-11-02T03:04:05Z": "2026-11-02T03:04:05Z"}
	for in, want := range cases {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(mustTime(t, want)) {
			t.Errorf("parseSince(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	if _, err := parseSince("yesterday", now); err == nil {
		t.Error("parseSince accepted garbage")
	}
}
