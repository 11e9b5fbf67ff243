// Package audit is the audit trail's writing side: one function every
// event of the server and of the operator CLI goes through, and the rate
// limiter for events a request without any credential can cause
// (docs/THREAT-MODEL.md rule 13, R-L1). No password, code or token is ever
// passed in.
package audit

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/totp-idp/idp/storage"
)

// Audit events that a request without any credential can trigger (no flow
// cookie, no session, no password: a login link opened elsewhere, a form
// post without its token, a replayed code or refresh token) are rate
// limited, so that nobody can fill the audit trail for free (README,
// Operations). Events with the same content share a bucket: the first
// auditKeyBurst of them are written, then one per auditKeyEvery; each kind
// of event also has an overall budget. What is dropped is counted in
// idp_audit_suppressed_total and in the next row of that kind.
const (
	auditKeyBurst   = 3
	auditKeyEvery   = time.Minute
	auditKindBurst  = 30
	auditKindPerMin = 30
	// maxAuditKeys bounds the limiter's memory; full buckets go first.
	maxAuditKeys = 10_000
)

// Anonymous are the kinds limited by content (audit); other callers
// limit by an explicit key (Trail.Limited).
var Anonymous = map[string]bool{
	"binding_mismatch":     true,
	"csrf_rejected":        true,
	"code_reused":          true,
	"refresh_token_reused": true,
	"logout":               true,
}

type auditBucket struct {
	tokens float64
	last   time.Time
}

// take refills b at perSecond up to burst and takes a token if there is one.
func (b *auditBucket) take(now time.Time, perSecond, burst float64) bool {
	b.tokens = math.Min(burst, b.tokens+now.Sub(b.last).Seconds()*perSecond)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Limiter is in memory, per process: a bound on growth, not a record.
type Limiter struct {
	mu         sync.Mutex
	keys       map[string]*auditBucket
	kinds      map[string]*auditBucket
	suppressed map[string]int64
}

func NewLimiter() *Limiter {
	return &Limiter{keys: map[string]*auditBucket{}, kinds: map[string]*auditBucket{}, suppressed: map[string]int64{}}
}

// allow reports whether an event of kind typ about key may be written now;
// when it may, dropped is how many of that kind were not written since the
// last one that was.
func (l *Limiter) Allow(typ, key string, now time.Time) (ok bool, dropped int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := typ + "\x00" + key
	b, found := l.keys[k]
	if !found {
		if len(l.keys) >= maxAuditKeys {
			l.sweep(now)
		}
		b = &auditBucket{tokens: auditKeyBurst, last: now}
		l.keys[k] = b
	}
	kind, found := l.kinds[typ]
	if !found {
		kind = &auditBucket{tokens: auditKindBurst, last: now}
		l.kinds[typ] = kind
	}
	// The kind's budget is only spent on an event its key allows.
	if !b.take(now, 1/auditKeyEvery.Seconds(), auditKeyBurst) || !kind.take(now, auditKindPerMin/60.0, auditKindBurst) {
		l.suppressed[typ]++
		return false, 0
	}
	dropped = l.suppressed[typ]
	delete(l.suppressed, typ)
	return true, dropped
}

// sweep drops buckets that have refilled (they hold no information), and
// if that is not enough, all of them.
func (l *Limiter) sweep(now time.Time) {
	for k, b := range l.keys {
		if b.tokens+now.Sub(b.last).Seconds()/auditKeyEvery.Seconds() >= auditKeyBurst {
			delete(l.keys, k)
		}
	}
	if len(l.keys) >= maxAuditKeys {
		clear(l.keys)
	}
}

// Append writes e to the log and the audit table: the one place every
// event of the server and of the operator CLI goes through
// (docs/THREAT-MODEL.md rule 13). log may be nil (the CLI without one).
// The row's write error is returned (and logged): the server's events go
// on without it, the operator CLI reports it (its actions must be
// audited).
func Append(ctx context.Context, st storage.Store, log *slog.Logger, e storage.AuditEvent) error {
	if log != nil {
		// slog's text and JSON handlers quote values, so a username with
		// a newline cannot forge a log line. The row's own request id and
		// address are written, so httpx.LogHandler must not add them again.
		log.LogAttrs(context.Background(), slog.LevelInfo, "audit",
			slog.String("event", e.Type), slog.String("user_id", e.UserID), slog.String("username", e.Username),
			slog.String("client_id", e.ClientID), slog.String("ip", e.ClientIP),
			slog.String("request_id", e.RequestID), slog.String("detail", e.Detail))
	}
	// The audit row must not be lost because the request was cancelled.
	err := st.AppendAudit(context.WithoutCancel(ctx), e)
	if err != nil && log != nil {
		log.Error("audit write failed", "event", e.Type, "request_id", e.RequestID, "err", err)
	}
	return err
}
