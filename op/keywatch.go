package op

import (
	"context"
	"errors"
	"time"

	"github.com/totp-idp/idp/storage"
)

// keyWatchInterval is how often a running server asks the database which
// secret key seals, so that an idle server follows `idp secrets rotate`
// too (every Seal asks as well).
const keyWatchInterval = 2 * time.Second

// staleSealWindow bounds how long after a key switch a value that this
// process sealed with the previous key can still reach the database: a
// request that sealed just before the switch and then waited for the write
// lock (busy_timeout 10 s, three attempts). The previous key is kept that
// long, to re-seal such values, and then forgotten.
const staleSealWindow = time.Minute

// errDatabaseKeyMoved stops a re-seal sweep: the database's key check names
// a key other than the sealer's, so re-sealing into the sealer's key would
// split the database between two keys.
var errDatabaseKeyMoved = errors.New("the database is sealed with another key than this process's")

// ResealStale re-seals, in one transaction, every value sealed with a key
// the sealer knows but no longer seals with, and returns how many it
// rewrote. Those are values that a request sealed just before `idp secrets
// rotate` replaced the key and wrote just after it re-sealed the database.
// Nothing changes unless the database's key check names the sealer's
// current key.
func (s *Sealer) ResealStale(ctx context.Context, st storage.Store) (int, error) {
	s.mu.Lock()
	cur, curID := s.current, s.currentID
	old := make(map[string][]byte, len(s.known))
	for id, k := range s.known {
		if id != curID {
			old[id] = k
		}
	}
	s.mu.Unlock()
	if len(old) == 0 {
		return 0, nil
	}
	return st.ReencryptSecrets(ctx, func(kind storage.SecretKind, id string, sealed []byte) ([]byte, error) {
		kid, err := SealedKeyID(sealed)
		if err != nil || kid == curID {
			return sealed, nil
		}
		if kind == storage.SecretSetting && id == keyCheckSetting {
			return nil, errDatabaseKeyMoved
		}
		k, ok := old[kid]
		if !ok {
			return sealed, nil // a key this process never had: not its value
		}
		aad, err := aadFor(kind, id)
		if err != nil {
			return nil, err
		}
		plain, err := open(k, aad, sealed)
		if err != nil {
			return sealed, nil // moved or tampered: opening it fails either way
		}
		return seal(cur, curID, aad, plain)
	})
}

// SwitchedAt is when the sealer last changed its sealing key to follow the
// database (zero if it never did).
func (s *Sealer) SwitchedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.switchedAt
}

// forgetOldKeys drops every key but the current one.
func (s *Sealer) forgetOldKeys() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.known {
		if id != s.currentID {
			delete(s.known, id)
		}
	}
}

// WatchSecretKey follows `idp secrets rotate` while the server runs
// (README, Operations, "The secret key"). Every keyWatchInterval it lets
// the sealer switch to the key the database now names; after a switch it
// re-seals what this process sealed with the previous key around the
// switch, at once and again after staleSealWindow, and then forgets the
// previous key. It returns when ctx ends; serve then calls ResealStale
// once more, after the last requests have finished.
func (s *Server) WatchSecretKey(ctx context.Context) {
	t := time.NewTicker(keyWatchInterval)
	defer t.Stop()
	var handled, finalAt time.Time
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.cfg.Sealer.Refresh(ctx); err != nil {
			if ctx.Err() == nil && err.Error() != lastErr {
				s.log.Error("secret key", "err", err)
				lastErr = err.Error()
			}
			continue
		}
		lastErr = ""
		if sw := s.cfg.Sealer.SwitchedAt(); !sw.IsZero() && !sw.Equal(handled) {
			handled, finalAt = sw, sw.Add(staleSealWindow)
			s.log.Info("secret key changed; sealing with the database's key from now on", "secret_key_id", s.cfg.Sealer.CurrentKeyID())
			s.ResealStale(ctx)
			continue
		}
		if !finalAt.IsZero() && !time.Now().Before(finalAt) {
			finalAt = time.Time{}
			if s.ResealStale(ctx) == nil {
				s.cfg.Sealer.forgetOldKeys()
				s.compact(ctx)
			}
		}
	}
}

// compact removes, once the rotation's last re-seal is done, the copies of
// values sealed with the old key that the database files still hold, so
// that the old key opens nothing in them (README, Operations).
func (s *Server) compact(ctx context.Context) {
	c, ok := s.store.(storage.Compacter)
	if !ok {
		return
	}
	if err := c.Compact(ctx); err != nil {
		s.log.Warn("compact the database after a secret-key rotation", "err", err)
	}
}

// ResealStale re-seals values this process sealed with a previous secret
// key (Sealer.ResealStale) and logs what it did.
func (s *Server) ResealStale(ctx context.Context) error {
	n, err := s.cfg.Sealer.ResealStale(ctx, s.store)
	switch {
	case err != nil:
		s.log.Warn("re-seal under the current secret key", "err", err)
	case n > 0:
		s.log.Warn("re-sealed values written with the previous secret key during a rotation", "count", n, "secret_key_id", s.cfg.Sealer.CurrentKeyID())
	}
	return err
}
