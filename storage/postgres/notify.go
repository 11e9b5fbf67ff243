package postgres

import (
	"context"
	"time"

	"github.com/totp-idp/idp/storage"
)

// changeChannel is the NOTIFY channel of migration 0002's triggers; the
// payload is the changed table's name.
const changeChannel = "idp_changes"

// ListenChanges implements storage.ChangeListener: it holds one pooled
// connection in LISTEN idp_changes and calls changed for every
// notification, until ctx ends. A lost connection may have missed some:
// on reconnecting it reports every kind as changed, then listens again
// (after a second, so that a database that is down is not hammered).
func (s *Store) ListenChanges(ctx context.Context, changed func(storage.Change)) error {
	for first := true; ; first = false {
		if !first {
			changed(storage.ChangeClients)
			changed(storage.ChangeSigningKeys)
		}
		err := s.listen(ctx, changed)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		_ = err // the next round reports everything as changed
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (s *Store) listen(ctx context.Context, changed func(storage.Change)) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection's session state (LISTEN) must not go back to the
	// pool: it leaves the pool and is closed at the end.
	c := conn.Hijack()
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "LISTEN "+changeChannel); err != nil {
		return err
	}
	for {
		n, err := c.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		switch n.Payload {
		case "clients":
			changed(storage.ChangeClients)
		case "signing_keys":
			changed(storage.ChangeSigningKeys)
		}
	}
}

// SchemaCurrent implements storage.SchemaChecker.
func (s *Store) SchemaCurrent(ctx context.Context) error { return s.checkSchema(ctx) }
