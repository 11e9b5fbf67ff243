package op

import (
	"context"
	"time"

	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
)

// keyWatchInterval is how often a running server asks the database which
// secret key seals, so that an idle server follows `idp secrets rotate`
// too (every Seal asks as well).
const keyWatchInterval = 2 * time.Second

// WatchSecretKey follows `idp secrets rotate` while the server runs
// (README, Operations, "The secret key"). Every keyWatchInterval it lets
// the sealer switch to the key the database now names; after a switch it
// re-seals what this process sealed with the previous key around the
// switch, at once and again after seal.StaleWindow, and then forgets the
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
			handled, finalAt = sw, sw.Add(seal.StaleWindow)
			s.log.Info("secret key changed; sealing with the database's key from now on", "secret_key_id", s.cfg.Sealer.CurrentKeyID())
			s.ResealStale(ctx)
			continue
		}
		if !finalAt.IsZero() && !time.Now().Before(finalAt) {
			finalAt = time.Time{}
			if s.ResealStale(ctx) == nil {
				s.cfg.Sealer.ForgetOldKeys()
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
