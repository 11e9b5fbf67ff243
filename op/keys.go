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

	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/op/secret"
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
	sealer    *seal.Sealer
	now       func() time.Time
	retention time.Duration

	mu      sync.Mutex
	loaded  time.Time
	rows    []storage.SigningKey // as loaded, for SigningKeyAt
	private map[string]*signingKey
	public  []zop.Key
}

// JWKSMaxAge is how long clients and caches may keep a JWKS answer
// (Cache-Control on /keys).
const JWKSMaxAge = 300 * time.Second

// DefaultKeyActivationDelay is how long `idp keys rotate` publishes a new
// key before it signs: a JWKS answer may be cached for JWKSMaxAge, and a
// server process reads keys again within keyCacheTTL; twice that leaves a
// margin for intermediary caches and clocks. A relying party that fetched
// JWKS just before the rotation therefore never meets an unknown kid.
const DefaultKeyActivationDelay = 2 * (JWKSMaxAge + keyCacheTTL)

// NewKeyManager returns a key manager over store; private keys are sealed
// with sealer.
func NewKeyManager(store storage.Store, sealer *seal.Sealer, now func() time.Time, retention time.Duration) *KeyManager {
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

// EnsureKey creates a signing key unless one is active or waiting to be.
// Concurrent processes on one database end up with a single key.
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

// Rotate adds a new key that is published at once and signs after
// activateAfter (DefaultKeyActivationDelay unless an operator must replace
// a compromised key now); the current key signs until then and stays
// published for the retention period after, so tokens it signed still
// verify. It returns the new key's id and activation time.
func (m *KeyManager) Rotate(ctx context.Context, activateAfter time.Duration) (string, time.Time, error) {
	now := m.now()
	k, err := m.newRSAKey(ctx, now)
	if err != nil {
		return "", time.Time{}, err
	}
	k.ActivatesAt = now.Add(activateAfter)
	if keys, err := m.store.SigningKeys(ctx, now); err != nil {
		return "", time.Time{}, err
	} else if _, signing := storage.SigningKeyAt(keys, now); !signing {
		// No key signs yet (a fresh database, or a rotation before the
		// first start): no relying party has cached anything, and waiting
		// would leave the provider without a key.
		k.ActivatesAt = now
	}
	if err := m.store.AddSigningKey(ctx, k, true, k.ActivatesAt.Add(m.retention)); err != nil {
		return "", time.Time{}, err
	}
	m.mu.Lock()
	m.loaded = time.Time{}
	m.mu.Unlock()
	return k.ID, k.ActivatesAt, nil
}

// SigningKey returns the private key that signs now (storage.SigningKeyAt).
func (m *KeyManager) SigningKey(ctx context.Context) (zop.SigningKey, error) {
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := storage.SigningKeyAt(m.rows, m.now())
	if !ok {
		return nil, errors.New("no active signing key")
	}
	return m.private[k.ID], nil
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

// invalidate makes the next use re-read the keys (a change reported by
// storage.ChangeListener).
func (m *KeyManager) invalidate() {
	m.mu.Lock()
	m.loaded = time.Time{}
	m.mu.Unlock()
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
	private := make(map[string]*signingKey, len(rows))
	public := make([]zop.Key, 0, len(rows))
	for _, r := range rows {
		der, err := m.sealer.Open(seal.AADSigningKey(r.ID), r.PrivateKey)
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
		private[r.ID] = &signingKey{id: r.ID, key: rk}
	}
	m.mu.Lock()
	m.rows, m.private, m.public, m.loaded = rows, private, public, now
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
	id := secret.New(12)
	jwk, err := json.Marshal(jose.JSONWebKey{Key: &priv.PublicKey, KeyID: id, Algorithm: string(jose.RS256), Use: "sig"})
	if err != nil {
		return storage.SigningKey{}, err
	}
	sealed, err := m.sealer.Seal(ctx, seal.AADSigningKey(id), der)
	if err != nil {
		return storage.SigningKey{}, err
	}
	return storage.SigningKey{ID: id, Algorithm: string(jose.RS256), PrivateKey: sealed, PublicJWK: jwk, CreatedAt: now}, nil
}
