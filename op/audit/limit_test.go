package audit

import (
	"fmt"
	"testing"
	"time"
)

func TestAuditLimiter(t *testing.T) {
	l := NewLimiter()
	now := time.Unix(1_900_000_000, 0)
	allowed := 0
	for range 10 {
		if ok, _ := l.Allow("binding_mismatch", "k", now); ok {
			allowed++
		}
	}
	if allowed != auditKeyBurst {
		t.Fatalf("one key: %d of 10 allowed at once, want %d", allowed, auditKeyBurst)
	}
	// Another kind has its own buckets.
	if ok, dropped := l.Allow("csrf_rejected", "k", now); !ok || dropped != 0 {
		t.Fatalf("another kind: ok %t, dropped %d", ok, dropped)
	}
	// The next row of the kind, for another key, learns what was dropped.
	if ok, dropped := l.Allow("binding_mismatch", "other", now); !ok || dropped != 10-auditKeyBurst {
		t.Fatalf("another key: ok %t, dropped %d; want true and %d", ok, dropped, 10-auditKeyBurst)
	}
	// A refilled key is allowed again; nothing is counted twice.
	if ok, dropped := l.Allow("binding_mismatch", "k", now.Add(auditKeyEvery)); !ok || dropped != 0 {
		t.Fatalf("after %s: ok %t, dropped %d", auditKeyEvery, ok, dropped)
	}

	// The kind's budget bounds events with ever new keys.
	l = NewLimiter()
	allowed = 0
	for i := range 100 {
		if ok, _ := l.Allow("password_failed", fmt.Sprint(i), now); ok {
			allowed++
		}
	}
	if allowed != auditKindBurst {
		t.Fatalf("100 keys at once: %d allowed, want %d", allowed, auditKindBurst)
	}
	if ok, dropped := l.Allow("password_failed", "new", now.Add(time.Minute)); !ok || dropped != 100-auditKindBurst {
		t.Fatalf("a minute later: ok %t dropped %d", ok, dropped)
	}

	// Memory stays bounded.
	for i := range 3 * maxAuditKeys {
		l.Allow("x", fmt.Sprint(i), now.Add(time.Duration(i)*time.Millisecond))
	}
	if len(l.keys) > maxAuditKeys {
		t.Fatalf("%d buckets kept, bound %d", len(l.keys), maxAuditKeys)
	}
}
