package op

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	zop "github.com/zitadel/oidc/v3/pkg/op"

	"github.com/totp-idp/idp/storage"
)

// keyCacheTTL bounds how long a process serves a key set before reading
// it again, so that `idp keys rotate` in another process takes effect
// without a restart while JWKS and signing stay served from memory.
const keyCacheTTL = 5 * time.Second

// KeyManager keeps the RS256 signing keys: the active private key and the
// published public keys, cached in memory.
type KeyManager struct {
	store     storage.Store
	sealer    *Sealer
	now       func() time.Time
	retention time.Duration

	mu      sync.Mutex
	loaded  time.Time
	signing *signingKey
	public  []zop.Key
}

// NewKeyManager returns a key manager over store; private keys are sealed
// with sealer.
func NewKeyManager(store storage.Store, sealer *Sealer, now func() time.Time, retention time.Duration) *KeyManager {
	return &KeyManager{store: store, sealer: sealer, now: now, retention: retention}
}

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct {
	id  string
	key *rsa.PublicKey
}

func (k *publicKey) ID() string                         { return k.id }
func (k *publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *publicKey) Use() string                        { return "sig" }

// Key returns the public key only: JWKS must never carry a private part.
func (k *publicKey) Key() any { return k.key }

// EnsureKey creates a signing key unless one is active. Concurrent
// processes on one database end up with a single active key.
func (m *KeyManager) EnsureKey(ctx context.Context) error {
	keys, err := m.store.SigningKeys(ctx, m.now())
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.RetiredAt.IsZero() {
			return nil
		}
	}
	k, err := m.newRSAKey(ctx, m.now())
	if err != nil {
		return err
	}
	err = m.store.AddSigningKey(ctx, k, false, time.Time{})
	if errors.Is(err, storage.ErrConflict) {
		return nil
	}
	return err
}

// Rotate makes a new key active; the old public key stays published for
// the retention period so tokens it signed still verify.
func (m *KeyManager) Rotate(ctx context.Context) (string, error) {
	now := m.now()
	k, err := m.newRSAKey(ctx, now)
	if err != nil {
		return "", err
	}
	if err := m.store.AddSigningKey(ctx, k, true, now.Add(m.retention)); err != nil {
		return "", err
	}
	m.mu.Lock()
	m.loaded = time.Time{}
	m.mu.Unlock()
	return k.ID, nil
}

// SigningKey returns the active private key.
func (m *KeyManager) SigningKey(ctx context.Context) (zop.SigningKey, error) {
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.signing == nil {
		return nil, errors.New("no active signing key")
	}
	return m.signing, nil
}

// KeySet returns the published public keys.
func (m *KeyManager) KeySet(ctx context.Context) ([]zop.Key, error) {
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.public, nil
}

func (m *KeyManager) load(ctx context.Context) error {
	now := m.now()
	m.mu.Lock()
	fresh := !m.loaded.IsZero() && now.Sub(m.loaded) < keyCacheTTL && now.After(m.loaded.Add(-time.Second))
	m.mu.Unlock()
	if fresh {
		return nil
	}
	rows, err := m.store.SigningKeys(ctx, now)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	var signing *signingKey
	public := make([]zop.Key, 0, len(rows))
	for _, r := range rows {
		der, err := m.sealer.Open(aadSigningKey(r.ID), r.PrivateKey)
		if err != nil {
			return fmt.Errorf("signing key %s: %w", r.ID, err)
		}
		priv, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return fmt.Errorf("signing key %s: %w", r.ID, err)
		}
		rk, ok := priv.(*rsa.PrivateKey)
		if !ok {
			return fmt.Errorf("signing key %s: not RSA", r.ID)
		}
		public = append(public, &publicKey{id: r.ID, key: &rk.PublicKey})
		if r.RetiredAt.IsZero() && signing == nil {
			signing = &signingKey{id: r.ID, key: rk}
		}
	}
	m.mu.Lock()
	m.signing, m.public, m.loaded = signing, public, now
	m.mu.Unlock()
	return nil
}

func (m *KeyManager) newRSAKey(ctx context.Context, now time.Time) (storage.SigningKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return storage.SigningKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return storage.SigningKey{}, err
	}
	id := randomID(12)
	jwk, err := json.Marshal(jose.JSONWebKey{Key: &priv.PublicKey, KeyID: id, Algorithm: string(jose.RS256), Use: "sig"})
	if err != nil {
		return storage.SigningKey{}, err
	}
	sealed, err := m.sealer.Seal(ctx, aadSigningKey(id), der)
	if err != nil {
		return storage.SigningKey{}, err
	}
	return storage.SigningKey{ID: id, Algorithm: string(jose.RS256), PrivateKey: sealed, PublicJWK: jwk, CreatedAt: now}, nil
}
