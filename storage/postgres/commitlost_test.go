package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/totp-idp/idp/storage"
)

// commitDropper is a Unix-socket proxy in front of the test server that
// forwards a COMMIT and then drops the connection before the server's
// answer reaches the client: the transaction is committed, the client
// sees a lost connection, and must not do it again (found by a review).
type commitDropper struct {
	armed   atomic.Int32 // how many COMMITs to drop after forwarding
	dropped atomic.Int32
	commits atomic.Int32 // COMMITs seen
	dir     string
}

func startCommitDropper(t *testing.T, cfg *pgxpool.Config) (*commitDropper, *pgxpool.Config) {
	network, address := pgconn.NetworkAddress(cfg.ConnConfig.Host, cfg.ConnConfig.Port)
	dir, err := os.MkdirTemp("", "cdrop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, ".s.PGSQL.5432")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &commitDropper{dir: dir}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.handle(c, network, address)
		}
	}()
	via := cfg.Copy()
	via.ConnConfig.Host = dir
	via.ConnConfig.Port = 5432
	via.ConnConfig.Fallbacks = nil
	via.ConnConfig.TLSConfig = nil
	return p, via
}

func (p *commitDropper) handle(c net.Conn, network, address string) {
	s, err := net.Dial(network, address)
	if err != nil {
		c.Close()
		return
	}
	var once sync.Once
	closeBoth := func() { once.Do(func() { c.Close(); s.Close() }) }
	defer closeBoth()
	var blackhole atomic.Bool
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := s.Read(buf)
			if n > 0 && !blackhole.Load() {
				if _, werr := c.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		closeBoth()
	}()
	// startup message: int32 length, payload
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	n := binary.BigEndian.Uint32(hdr[:])
	body := make([]byte, n-4)
	if _, err := io.ReadFull(c, body); err != nil {
		return
	}
	s.Write(append(hdr[:], body...))
	for {
		var h [5]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		l := binary.BigEndian.Uint32(h[1:])
		b := make([]byte, l-4)
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		drop := false
		if h[0] == 'Q' && bytes.HasPrefix(bytes.ToLower(bytes.TrimSpace(b)), []byte("commit")) {
			p.commits.Add(1)
			if p.armed.Load() > 0 && p.armed.Add(-1) >= 0 {
				drop = true
				blackhole.Store(true)
			}
		}
		if _, err := s.Write(append(h[:], b...)); err != nil {
			return
		}
		if drop {
			// let the server commit, then lose the answer
			time.Sleep(200 * time.Millisecond)
			p.dropped.Add(1)
			return
		}
	}
}

// TestCommitLostIsNotRetried: when the answer to COMMIT is lost, the
// outcome is unknown: the store reports an error that is neither
// storage.ErrBusy ("nothing changed, send it again") nor a contract error,
// and does not run the transaction a second time. Retrying it counted a
// claim twice, applied a refund twice (a free guess), turned a first
// redemption into "reused" and revoked a rotation's own new token.
func TestCommitLostIsNotRetried(t *testing.T) {
	ctx := context.Background()
	cfg := freshDatabase(t)
	direct := openTest(t, cfg, OpenOptions{})
	p, via := startCommitDropper(t, cfg)
	s := openTest(t, via, OpenOptions{NoMigrate: true})
	now := time.Unix(1_800_000_000, 0)
	if err := direct.CreateUser(ctx, storage.User{ID: "u1", Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := direct.CreateClient(ctx, storage.Client{ID: "c1", Name: "c", RedirectURIs: []string{"https://rp/cb"}}); err != nil {
		t.Fatal(err)
	}
	unknown := func(what string, err error) {
		t.Helper()
		if err == nil || errors.Is(err, storage.ErrBusy) || errors.Is(err, storage.ErrReused) || errors.Is(err, storage.ErrConflict) {
			t.Errorf("%s with its COMMIT answer lost: %v, want an outcome-unknown error", what, err)
		}
	}
	totpFailures := func() int {
		st, err := direct.AttemptStates(ctx, "u1")
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range st {
			if a.Factor == storage.FactorTOTP {
				return a.Failures
			}
		}
		return 0
	}

	pol := storage.LockPolicy{FreeFailures: 3, BaseLock: time.Minute, MaxLock: time.Hour, HardLimit: 10}
	p.armed.Store(1)
	_, err := s.ClaimAttempt(ctx, "u1", storage.FactorTOTP, now, pol)
	unknown("ClaimAttempt", err)
	if n := totpFailures(); n != 1 {
		t.Errorf("one ClaimAttempt counted %d failures", n)
	}

	pw := storage.LockPolicy{FreeFailures: 10, BaseLock: 30 * time.Second, MaxLock: 15 * time.Minute, HardLimit: 100, Decay: 24 * time.Hour}
	var last storage.AttemptClaim
	for range 6 {
		if last, err = direct.ClaimAttempt(ctx, "u1", storage.FactorPassword, now, pw); err != nil {
			t.Fatal(err)
		}
	}
	p.armed.Store(1)
	unknown("AttemptSucceeded", s.AttemptSucceeded(ctx, "u1", storage.FactorPassword, last, now, pw))
	for _, a := range mustStates(t, direct) {
		if a.Factor == storage.FactorPassword && a.Failures != 5 {
			t.Errorf("a right password's refund left %d failures of 6 claims, want 5 (applied once)", a.Failures)
		}
	}

	a := storage.AuthRequest{ID: "ar1", ClientID: "c1", RedirectURI: "https://rp/cb", CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
	if err := direct.CreateAuthRequest(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := direct.PasswordVerified(ctx, "ar1", "u1", now); err != nil {
		t.Fatal(err)
	}
	if err := direct.PutTOTP(ctx, storage.TOTPCredential{UserID: "u1", Secret: []byte("x"), Confirmed: true, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := direct.CompleteTOTP(ctx, "ar1", "u1", 100, now, []string{"pwd", "otp"}, "acr"); err != nil {
		t.Fatal(err)
	}
	if err := direct.SaveAuthCode(ctx, "ar1", []byte("codehash-1"), now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	p.armed.Store(1)
	_, err = s.ConsumeAuthCode(ctx, []byte("codehash-1"), now)
	unknown("ConsumeAuthCode", err)

	rt := storage.RefreshToken{ID: "rt1", TokenHash: []byte("rth-1"), ClientID: "c1", UserID: "u1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := direct.CreateRefreshToken(ctx, rt, storage.AccessToken{ID: "at1", ClientID: "c1", UserID: "u1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	next := storage.RefreshToken{ID: "rt2", TokenHash: []byte("rth-2"), ClientID: "c1", UserID: "u1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	p.armed.Store(1)
	unknown("RotateRefreshToken", s.RotateRefreshToken(ctx, []byte("rth-1"), next,
		storage.AccessToken{ID: "at2", ClientID: "c1", UserID: "u1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, now))
	if r2, err := direct.RefreshTokenByID(ctx, "rt2"); err != nil || !r2.RevokedAt.IsZero() {
		t.Errorf("the rotation's new token: %+v %v, want it live", r2, err)
	}

	p.armed.Store(1)
	unknown("AppendAudit", s.AppendAudit(ctx, storage.AuditEvent{Time: now, Type: "probe"}))
	evs, _ := direct.ListAudit(ctx, storage.AuditFilter{})
	n := 0
	for _, e := range evs {
		if e.Type == "probe" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("one AppendAudit stored %d rows", n)
	}
	if p.dropped.Load() != 5 {
		t.Fatalf("the proxy dropped %d COMMIT answers, want 5 (the test did not test)", p.dropped.Load())
	}
}

func mustStates(t *testing.T, s *Store) []storage.AttemptState {
	t.Helper()
	st, err := s.AttemptStates(context.Background(), "u1")
	if err != nil {
		t.Fatal(err)
	}
	return st
}
