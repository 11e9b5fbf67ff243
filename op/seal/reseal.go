package seal

import (
	"context"
	"errors"
	"time"

	"github.com/totp-idp/idp/storage"
)

// StaleWindow bounds how long after a key switch a value that this
// process sealed with the previous key can still reach the database: a
// request that sealed just before the switch and then waited for the write
// lock (busy_timeout 10 s, three attempts). The previous key is kept that
// long, to re-seal such values, and then forgotten.
const StaleWindow = time.Minute

// ErrDatabaseKeyMoved stops a re-seal sweep: the database's key check names
// a key other than the sealer's, so re-sealing into the sealer's key would
// split the database between two keys.
var ErrDatabaseKeyMoved = errors.New("the database is sealed with another key than this process's")

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
		kid, err := KeyIDOf(sealed)
		if err != nil || kid == curID {
			return sealed, nil
		}
		if kind == storage.SecretSetting && id == keyCheckSetting {
			return nil, ErrDatabaseKeyMoved
		}
		k, ok := old[kid]
		if !ok {
			return sealed, nil // a key this process never had: not its value
		}
		aad, err := AADFor(kind, id)
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

// ForgetOldKeys drops every key but the current one.
func (s *Sealer) ForgetOldKeys() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.known {
		if id != s.currentID {
			delete(s.known, id)
		}
	}
}
