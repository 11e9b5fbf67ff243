// Package password hashes and verifies passwords with argon2id (OWASP
// Password Storage Cheat Sheet) in a bounded pool: each hash costs m MiB
// and a core for tens of milliseconds, so at most a configured number run
// at once and the rest wait in a queue with a timeout
// (docs/THREAT-MODEL.md rule 11, R-S1). Passwords are Unicode-NFKC
// normalised, so every keyboard's "é" is the same password.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"
)

// MaxBytes bounds a password before any hashing (docs/THREAT-MODEL.md
// rule 11): long enough for any passphrase, short enough that nobody can
// make us hash megabytes.
const MaxBytes = 1024

// ErrTooLong is returned before hashing an over-long password.
var ErrTooLong = fmt.Errorf("password longer than %d bytes", MaxBytes)

// ErrBusy: no hashing slot was free within the queue timeout.
var ErrBusy = errors.New("password hashing capacity exhausted")

// Params are argon2id cost parameters.
type Params struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// OWASP is the OWASP Password Storage Cheat Sheet minimum for argon2id:
// m=19 MiB, t=2, p=1.
var OWASP = Params{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

// owaspMinimums are the argon2id configurations of the OWASP Password
// Storage Cheat Sheet, which it rates as equally strong: memory (KiB) with
// at least that many passes.
var owaspMinimums = []Params{
	{MemoryKiB: 46 * 1024, Time: 1}, {MemoryKiB: 19 * 1024, Time: 2}, {MemoryKiB: 12 * 1024, Time: 3},
	{MemoryKiB: 9 * 1024, Time: 4}, {MemoryKiB: 7 * 1024, Time: 5},
}

// MeetsOWASP reports whether p is at least one of OWASP's configurations.
func (p Params) MeetsOWASP() bool {
	if p.Threads < 1 {
		return false
	}
	for _, m := range owaspMinimums {
		if p.MemoryKiB >= m.MemoryKiB && p.Time >= m.Time {
			return true
		}
	}
	return false
}

// Hasher computes and verifies argon2id password hashes (PHC strings) with
// a bounded number running at once, since each costs m MiB and a core for
// tens of milliseconds (docs/THREAT-MODEL.md rule 12).
type Hasher struct {
	params  Params
	slots   chan struct{}
	timeout time.Duration

	dummyOnce sync.Once
	dummy     string
	dummyErr  error

	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	computed    atomic.Int64
}

// NewHasher returns a hasher allowing concurrency hashes at once; a caller
// waits at most queueTimeout for a slot (0: as long as its context lives).
func NewHasher(p Params, concurrency int, queueTimeout time.Duration) (*Hasher, error) {
	if concurrency < 1 {
		concurrency = 1
	}
	return &Hasher{params: p, slots: make(chan struct{}, concurrency), timeout: queueTimeout}, nil
}

// Warm computes the dummy hash now rather than at the first unknown user,
// whose answer would otherwise take two hashes (a timing difference).
func (h *Hasher) Warm() error {
	h.dummyOnce.Do(func() {
		h.dummy, h.dummyErr = h.hashUnbounded("dummy password for unknown users")
	})
	return h.dummyErr
}

// Normalize applies Unicode NFKC, as NIST SP 800-63B §5.1.1.2
// advises, so that "é" typed as one code point or as e + combining accent
// (different keyboards and platforms) is the same password.
// Normalize is the form a password is hashed in (Unicode NFKC).
func Normalize(p string) string { return norm.NFKC.String(p) }

// Hash returns the PHC string of password.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if len(password) > MaxBytes {
		return "", ErrTooLong
	}
	password = Normalize(password)
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	h.computed.Add(1)
	return h.hashUnbounded(password)
}

// Verify reports whether password matches the PHC string encoded. An
// empty encoded (unknown user) is checked against a dummy hash so that the
// answer costs the same as for a real account (docs/THREAT-MODEL.md rule 11).
func (h *Hasher) Verify(ctx context.Context, encoded, password string) (bool, error) {
	slot, err := h.Reserve(ctx)
	if err != nil {
		return false, err
	}
	defer slot.Release()
	return slot.Verify(encoded, password)
}

// Slot is a hashing slot taken by Reserve, so that a caller can wait for
// hashing capacity before it claims an attempt: the claim and the hash
// then follow each other within one hash time, however long the queue
// (the window in which a claim is counted but not yet known to be right,
// docs/THREAT-MODEL.md rule 3).
type Slot struct {
	h    *Hasher
	done bool
}

// Reserve waits for a hashing slot (ErrBusy after the queue timeout).
// The caller must Release it.
func (h *Hasher) Reserve(ctx context.Context) (*Slot, error) {
	if err := h.acquire(ctx); err != nil {
		return nil, err
	}
	return &Slot{h: h}, nil
}

// Release gives the slot back; a second call does nothing.
func (s *Slot) Release() {
	if !s.done {
		s.done = true
		s.h.release()
	}
}

// Hash is Hasher.Hash on the reserved slot: it never waits.
func (s *Slot) Hash(password string) (string, error) {
	if len(password) > MaxBytes {
		return "", ErrTooLong
	}
	s.h.computed.Add(1)
	return s.h.hashUnbounded(Normalize(password))
}

// Verify is Hasher.Verify on the reserved slot: it never waits.
func (s *Slot) Verify(encoded, password string) (bool, error) {
	if len(password) > MaxBytes {
		return false, ErrTooLong
	}
	h := s.h
	password = Normalize(password)
	real := encoded != ""
	if !real {
		if err := h.Warm(); err != nil {
			return false, err
		}
		encoded = h.dummy
	}
	p, salt, want, err := parsePHC(encoded)
	if err != nil {
		return false, err
	}
	h.computed.Add(1)
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	ok := subtle.ConstantTimeCompare(got, want) == 1
	return ok && real, nil
}

// NeedsRehash reports whether encoded uses weaker parameters than the
// hasher's, so a successful login can upgrade it.
func (h *Hasher) NeedsRehash(encoded string) bool {
	p, _, _, err := parsePHC(encoded)
	return err != nil || p.MemoryKiB < h.params.MemoryKiB || p.Time < h.params.Time
}

// Stats reports hashes running now, the most ever running at once, and the
// total computed.
func (h *Hasher) Stats() (inFlight, maxInFlight, computed int64) {
	return h.inFlight.Load(), h.maxInFlight.Load(), h.computed.Load()
}

// Capacity is the number of hashes allowed at once.
func (h *Hasher) Capacity() int { return cap(h.slots) }

func (h *Hasher) acquire(ctx context.Context) error {
	var expired <-chan time.Time
	if h.timeout > 0 {
		t := time.NewTimer(h.timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case h.slots <- struct{}{}:
	case <-expired:
		return ErrBusy
	case <-ctx.Done():
		return ctx.Err()
	}
	n := h.inFlight.Add(1)
	for {
		m := h.maxInFlight.Load()
		if n <= m || h.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	return nil
}

func (h *Hasher) release() {
	h.inFlight.Add(-1)
	<-h.slots
}

func (h *Hasher) hashUnbounded(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	p := h.params
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

func parsePHC(s string) (Params, []byte, []byte, error) {
	var p Params
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return p, nil, nil, errors.New("not an argon2id PHC string")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, errors.New("unsupported argon2 version")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, fmt.Errorf("argon2 parameters: %w", err)
	}
	if p.MemoryKiB == 0 || p.MemoryKiB > 4<<20 || p.Time == 0 || p.Time > 64 || p.Threads == 0 {
		return p, nil, nil, errors.New("argon2 parameters out of range")
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return p, nil, nil, fmt.Errorf("argon2 salt: %w", err)
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) < 16 {
		return p, nil, nil, errors.New("argon2 key malformed")
	}
	return p, salt, key, nil
}
