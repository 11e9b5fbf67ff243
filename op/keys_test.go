package op

import (
	"context"
	"testing"
	"time"
)

// TestKeyRotationPublishesBeforeSigning: after Rotate the new key is in the
// key set at once, the old one signs until the activation, and the switch
// happens at the activation without waiting for the key cache.
func TestKeyRotationPublishesBeforeSigning(t *testing.T) {
	ctx := context.Background()
	st, sealer := testStore(t)
	now := time.Unix(1_900_000_000, 0).UTC()
	km := NewKeyManager(st, sealer, func() time.Time { return now }, 48*time.Hour)
	if err := km.EnsureKey(ctx); err != nil {
		t.Fatal(err)
	}
	old, err := km.SigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, at, err := km.Rotate(ctx, DefaultKeyActivationDelay)
	if err != nil || !at.Equal(now.Add(DefaultKeyActivationDelay)) {
		t.Fatalf("Rotate: %s %s %v", id, at, err)
	}
	keys, err := km.KeySet(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("key set after Rotate: %d keys, %v", len(keys), err)
	}
	if k, _ := km.SigningKey(ctx); k.ID() != old.ID() {
		t.Fatalf("signing with %s right after Rotate, want the old %s", k.ID(), old.ID())
	}
	now = at.Add(-time.Second)
	if k, _ := km.SigningKey(ctx); k.ID() != old.ID() {
		t.Fatalf("signing with %s a second before the activation", k.ID())
	}
	now = at
	if k, _ := km.SigningKey(ctx); k.ID() != id {
		t.Fatalf("signing with %s at the activation, want %s", k.ID(), id)
	}
	if err := km.EnsureKey(ctx); err != nil {
		t.Fatal(err)
	}
	if keys, _ := km.KeySet(ctx); len(keys) != 2 {
		t.Fatalf("EnsureKey after a rotation added a key: %d", len(keys))
	}
}
