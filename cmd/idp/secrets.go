package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/totp-idp/idp/op/admin"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
)

// keyFileFor resolves the secret key file: the flag's value, else the file
// that --dev creates beside the database (DB.key) if it exists.
func keyFileFor(flagValue, db string) string {
	if flagValue != "" {
		return flagValue
	}
	if isPostgres(db) {
		// No file beside a URL: every replica is given the same key.
		return ""
	}
	dev := db + ".key"
	if _, err := os.Stat(dev); err == nil {
		return dev
	}
	return ""
}

// loadSealer reads the secret key. With create (idp serve --dev) a missing
// DB.key is generated with mode 0600.
func loadSealer(flagValue, db string, create bool) (*seal.Sealer, string, error) {
	path := keyFileFor(flagValue, db)
	if path == "" && create && isPostgres(db) {
		return nil, "", fmt.Errorf("%w: --dev creates a key beside a SQLite file; with PostgreSQL every replica needs the same --secret-key-file", seal.ErrKey)
	}
	if path == "" && create {
		path = db + ".key"
		if err := seal.GenerateKeyFile(path); err != nil {
			return nil, "", fmt.Errorf("create secret key %s: %w", path, err)
		}
	}
	if path == "" {
		return nil, "", fmt.Errorf("%w: none given; pass --secret-key-file F (or IDP_SECRET_KEY_FILE) naming a file with 32 random bytes in base64, e.g. made by: head -c 32 /dev/urandom | base64 > F && chmod 600 F", seal.ErrKey)
	}
	s, err := seal.Load(path)
	return s, path, err
}

func (e *env) secrets(ctx context.Context, args []string) (err error) {
	if len(args) == 0 || args[0] != "rotate" {
		return usageError{"idp secrets: expected rotate"}
	}
	fs, db := e.newFlags("secrets rotate")
	keyFile := fs.String("secret-key-file", "", "the current secret key file (default: DB.key if it exists)")
	newKeyFile := fs.String("new-key-file", "", "file with the new key (32 random bytes, base64)")
	pos, err := parseArgs(fs, args[1:], "")
	if err != nil {
		return err
	}
	if err := needArgs(pos, 0, "no arguments"); err != nil {
		return err
	}
	if *newKeyFile == "" {
		return usageError{"--new-key-file is required"}
	}
	newKey, err := seal.ReadKeyFile(*newKeyFile)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	sealer, path, err := loadSealer(*keyFile, *db, false)
	if err != nil {
		return err
	}
	if err := seal.CheckKey(ctx, st, sealer); err != nil {
		return err
	}
	if seal.KeyID(newKey) == sealer.CurrentKeyID() {
		return errors.New("the new key is the current key")
	}
	adm := &admin.Admin{Store: st, Sealer: sealer}
	n, err := adm.RotateSecrets(ctx, newKey)
	if err != nil {
		return fmt.Errorf("rotation failed, nothing changed: %w", err)
	}
	defer unaudited(adm, &err)
	// Running servers see the database name the new key and take it from
	// their key file (README, Operations): replace the file atomically.
	if err := replaceFile(path, *newKeyFile); err != nil {
		return fmt.Errorf("re-encrypted %d secrets under key %s, but could not update %s: %w; copy %s over it before restarting servers",
			n, seal.KeyID(newKey), path, err, *newKeyFile)
	}
	// Drop the old ciphertexts' page images from the WAL and the database
	// file (secure_delete zeroes what was replaced).
	if c, ok := st.(storage.Compacter); ok {
		if err := c.Compact(ctx); err != nil {
			fmt.Fprintf(e.stderr, "warning: could not truncate the database's write-ahead log (%v); it still holds copies the old key opens until the servers truncate it\n", err)
		}
	}
	if isPostgres(*db) {
		// PostgreSQL keeps replaced row versions until VACUUM, and in its
		// WAL, archives and standbys: nothing a client can clear.
		fmt.Fprintf(e.stdout, "Re-encrypted %d secrets under key %s and wrote the new key to %s.\nCopy it to the key file of every replica: each takes it from its file when it sees the database name the new key, and re-seals within a minute anything it wrote with the old key meanwhile. The database keeps old row versions until VACUUM, and its WAL archives and standbys keep them longer: run VACUUM FULL on the tables holding secrets, and destroy the old key, old WAL archives and backups made before the rotation.\n", n, seal.KeyID(newKey), path)
		return nil
	}
	fmt.Fprintf(e.stdout, "Re-encrypted %d secrets under key %s and wrote the new key to %s.\nRunning servers seal with it from now on, re-seal within a minute anything they wrote with the old key meanwhile, and then clear the database files of old copies. After that the old key opens nothing; destroy every copy of it, and of database backups made before the rotation.\n", n, seal.KeyID(newKey), path)
	return nil
}

// replaceFile atomically replaces dst's content with src's (mode 0600).
func replaceFile(dst, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".idp-key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
