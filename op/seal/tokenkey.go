package seal

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/totp-idp/idp/storage"
)

// OpenTokenKey opens the database's opaque-token key, creating it on
// first use. It is shared by every process on the database (any of them
// can read a token another issued) and sealed like every secret; the keys
// of unknown-name counters and device cookies derive from it (DeriveKey).
func OpenTokenKey(ctx context.Context, sealer *Sealer, store storage.Store) ([32]byte, error) {
	var key [32]byte
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return key, err
	}
	name := storage.SealedSettingPrefix + "oidc_token_key"
	sealed, err := sealer.Seal(ctx, AADSetting(name), fresh)
	if err != nil {
		return key, err
	}
	stored, err := store.PutSettingIfAbsent(ctx, name, sealed)
	if err != nil {
		return key, fmt.Errorf("token key: %w", err)
	}
	plain, err := sealer.Open(AADSetting(name), stored)
	if err != nil || len(plain) != 32 {
		return key, fmt.Errorf("token key: %w", errors.Join(ErrKey, err))
	}
	copy(key[:], plain)
	return key, nil
}

// DeriveKey is a purpose-bound key from the token key (HMAC-SHA256 as a
// PRF, NIST SP 800-108r1 §4.1).
func DeriveKey(tokenKey [32]byte, purpose string) []byte {
	mac := hmac.New(sha256.New, tokenKey[:])
	mac.Write([]byte(purpose))
	return mac.Sum(nil)
}
