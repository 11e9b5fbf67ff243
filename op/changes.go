package op

import (
	"context"

	"github.com/totp-idp/idp/storage"
)

// WatchChanges re-reads cached clients and signing keys as soon as the
// store reports that another process changed them (PostgreSQL's
// LISTEN/NOTIFY, storage.ChangeListener): a deleted client or a rotated
// key takes effect on every replica within a second, not at the next
// timed re-read (5 s and 15 s), which stays the fallback. It returns when
// ctx ends, at once for a store that reports nothing (SQLite).
func (s *Server) WatchChanges(ctx context.Context) {
	l, ok := s.store.(storage.ChangeListener)
	if !ok {
		return
	}
	_ = l.ListenChanges(ctx, func(c storage.Change) {
		switch c {
		case storage.ChangeClients:
			s.clients.invalidate()
		case storage.ChangeSigningKeys:
			s.keys.invalidate()
		}
	})
}
