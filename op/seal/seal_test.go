package seal

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// TestOpenRefusesTampering: a sealed value opens only unchanged, under its
// own row's associated data and with the key it names; a flipped bit, a
// swapped row, an unknown key id, a truncated value or a foreign format
// are refused, and none opens to anything (docs/THREAT-MODEL.md R-S2).
func TestOpenRefusesTampering(t *testing.T) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{3}, 32)
	s, err := New(key, "") // no store bound: seals with its own key
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.Seal(ctx, AADTOTP("u1"), []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := s.Open(AADTOTP("u1"), sealed); err != nil || string(pt) != "seed" {
		t.Fatalf("the value itself: %q, %v", pt, err)
	}
	if id, err := KeyIDOf(sealed); err != nil || id != KeyID(key) {
		t.Fatalf("KeyIDOf = %q, %v, want %s", id, err, KeyID(key))
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 1
		return b
	}
	other, _ := New(bytes.Repeat([]byte{4}, 32), "")
	foreign, _ := other.Seal(ctx, AADTOTP("u1"), []byte("seed"))
	for _, tc := range []struct {
		name  string
		aad   string
		value []byte
		isKey bool // refused as a key this sealer does not have
	}{
		{"ciphertext bit flipped", AADTOTP("u1"), flip(len(sealed) - 1), false},
		{"nonce bit flipped", AADTOTP("u1"), flip(len(sealVersion) + keyIDLen), false},
		{"moved to another user's row", AADTOTP("u2"), sealed, false},
		{"moved to another kind of row", AADSetting("u1"), sealed, false},
		{"key id changed", AADTOTP("u1"), flip(len(sealVersion)), true},
		{"sealed under another key", AADTOTP("u1"), foreign, true},
		{"truncated after the header", AADTOTP("u1"), sealed[:len(sealVersion)+keyIDLen+4], false},
		{"truncated inside the header", AADTOTP("u1"), sealed[:3], false},
		{"not a sealed value", AADTOTP("u1"), []byte("plain secret"), false},
		{"empty", AADTOTP("u1"), nil, false},
	} {
		pt, err := s.Open(tc.aad, tc.value)
		if err == nil || pt != nil {
			t.Errorf("%s: opened to %q", tc.name, pt)
			continue
		}
		if errors.Is(err, ErrKey) != tc.isKey {
			t.Errorf("%s: %v (ErrKey %t, want %t)", tc.name, err, errors.Is(err, ErrKey), tc.isKey)
		}
	}
}
