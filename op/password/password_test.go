package password

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// cheap parameters keep these unit tests fast; the PHC format and the
// bound are what is tested here.
var testArgon2 = Params{MemoryKiB: 64, Time: 1, Threads: 1}

func TestHasherRoundTrip(t *testing.T) {
	h, err := NewHasher(testArgon2, 2, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	enc, err := h.Hash(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("PHC string %q", enc)
	}
	if ok, err := h.Verify(ctx, enc, "correct horse"); !ok || err != nil {
		t.Errorf("right password: %v %v", ok, err)
	}
	if ok, _ := h.Verify(ctx, enc, "wrong horse"); ok {
		t.Error("wrong password accepted")
	}
	// Unknown users are checked against the dummy hash and never match,
	// not even with the dummy's own password.
	if ok, err := h.Verify(ctx, "", "dummy password for unknown users"); ok || err != nil {
		t.Errorf("dummy verify: %v %v", ok, err)
	}
	_, _, before := h.Stats()
	_, _ = h.Verify(ctx, "", "x")
	if _, _, after := h.Stats(); after != before+1 {
		t.Error("unknown user did not cost a hash")
	}
}

func TestHasherRejectsLongPasswordWithoutHashing(t *testing.T) {
	h, _ := NewHasher(testArgon2, 1, time.Second)
	_, _, before := h.Stats()
	long := strings.Repeat("x", MaxBytes+1)
	if _, err := h.Verify(context.Background(), "", long); !errors.Is(err, ErrTooLong) {
		t.Fatalf("err = %v", err)
	}
	if _, err := h.Hash(context.Background(), long); !errors.Is(err, ErrTooLong) {
		t.Fatalf("err = %v", err)
	}
	if _, _, after := h.Stats(); after != before {
		t.Error("a too-long password was hashed")
	}
}

func TestHasherBoundsConcurrency(t *testing.T) {
	h, _ := NewHasher(Params{MemoryKiB: 1024, Time: 2, Threads: 1}, 2, 30*time.Second)
	enc, _ := h.Hash(context.Background(), "pw")
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = h.Verify(context.Background(), enc, "guess")
		}()
	}
	wg.Wait()
	if _, peak, _ := h.Stats(); peak > 2 || peak < 1 {
		t.Errorf("peak concurrent hashes %d, bound 2", peak)
	}
}

func TestHasherQueueTimeout(t *testing.T) {
	h, _ := NewHasher(testArgon2, 1, 20*time.Millisecond)
	h.slots <- struct{}{} // occupy the only slot
	defer func() { <-h.slots }()
	if _, err := h.Verify(context.Background(), "", "x"); !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
}

func TestNeedsRehash(t *testing.T) {
	weak, _ := NewHasher(testArgon2, 1, time.Second)
	strong, _ := NewHasher(Params{MemoryKiB: 128, Time: 2, Threads: 1}, 1, time.Second)
	enc, _ := weak.Hash(context.Background(), "pw")
	if !strong.NeedsRehash(enc) || weak.NeedsRehash(enc) {
		t.Error("NeedsRehash wrong")
	}
	if !strong.NeedsRehash("garbage") {
		t.Error("garbage hash should need rehash")
	}
}

func TestParsePHCRejectsMalformed(t *testing.T) {
	for _, s := range []string{"", "$argon2i$v=19$m=64,t=1,p=1$c2FsdA$a2V5a2V5a2V5a2V5a2V5", "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdA$a2V5a2V5a2V5a2V5a2V5", "$argon2id$v=19$m=64,t=1,p=1$!!$a2V5"} {
		if _, _, _, err := parsePHC(s); err == nil {
			t.Errorf("parsePHC(%q) accepted", s)
		}
	}
}

// TestPasswordUnicodeNormalized: a password typed with a precomposed or a
// decomposed accent is the same password (NIST SP 800-63B §5.1.1.2).
func TestPasswordUnicodeNormalized(t *testing.T) {
	h, _ := NewHasher(testArgon2, 1, time.Second)
	ctx := context.Background()
	enc, err := h.Hash(ctx, "s\u00e9same ouvre-toi")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := h.Verify(ctx, enc, "se\u0301same ouvre-toi"); !ok {
		t.Error("decomposed spelling refused")
	}
	if ok, _ := h.Verify(ctx, enc, "sesame ouvre-toi"); ok {
		t.Error("a different password accepted")
	}
}
