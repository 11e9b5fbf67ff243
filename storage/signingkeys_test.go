package storage

import (
	"testing"
	"time"
)

func TestSigningKeyAt(t *testing.T) {
	t0 := time.Unix(1_900_000_000, 0).UTC()
	old := SigningKey{ID: "old", CreatedAt: t0.Add(-time.Hour), RetiredAt: t0.Add(10 * time.Minute), ExpiresAt: t0.Add(48 * time.Hour)}
	next := SigningKey{ID: "next", CreatedAt: t0, ActivatesAt: t0.Add(10 * time.Minute)}
	keys := []SigningKey{next, old}
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{t0, "old"},
		{t0.Add(10*time.Minute - time.Second), "old"},
		{t0.Add(10 * time.Minute), "next"},
		{t0.Add(time.Hour), "next"},
		{t0.Add(-2 * time.Hour), ""},
	} {
		k, ok := SigningKeyAt(keys, tc.at)
		if got := map[bool]string{true: k.ID}[ok]; got != tc.want {
			t.Errorf("at %s: %q, want %q", tc.at.Sub(t0), got, tc.want)
		}
	}
	// An immediate rotation while a next key waits: the newest activation
	// wins, though the first key is not retired yet.
	now := SigningKey{ID: "now", CreatedAt: t0.Add(time.Minute)}
	next.RetiredAt = t0.Add(time.Minute)
	if k, _ := SigningKeyAt([]SigningKey{now, next, old}, t0.Add(2*time.Minute)); k.ID != "now" {
		t.Errorf("after an immediate rotation: %q", k.ID)
	}
}
