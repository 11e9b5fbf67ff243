package audit

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/totp-idp/idp/op/httpx"
	"github.com/totp-idp/idp/op/metrics"
	"github.com/totp-idp/idp/storage"
)

// Trail is the server's side of the audit trail: each event carries the
// request id and client address of the request in its context.
type Trail struct {
	Store   storage.Store
	Log     *slog.Logger
	Now     func() time.Time
	Limit   *Limiter
	Metrics *metrics.Registry
}

// Event appends a security event to the audit table and the log
// (docs/THREAT-MODEL.md rule 13). Callers never pass a password, code or
// token. Events a request without any credential can trigger (Anonymous)
// are rate limited by their content.
func (t *Trail) Event(ctx context.Context, typ, userID, username, clientID, detail string) {
	if Anonymous[typ] {
		t.Limited(ctx, userID+"\x00"+clientID+"\x00"+detail, typ, userID, username, clientID, detail)
		return
	}
	t.write(ctx, typ, userID, username, clientID, detail)
}

// Limited is Event for an event that a request without any credential can
// trigger, rate limited per kind and key (Limiter).
func (t *Trail) Limited(ctx context.Context, key, typ, userID, username, clientID, detail string) {
	ok, dropped := t.Limit.Allow(typ, key, t.Now())
	if !ok {
		t.Metrics.AuditSuppressed(typ)
		return
	}
	if dropped > 0 {
		detail += fmt.Sprintf(" (%d more %s events not recorded before this one)", dropped, typ)
	}
	t.write(ctx, typ, userID, username, clientID, detail)
}

func (t *Trail) write(ctx context.Context, typ, userID, username, clientID, detail string) {
	rq := httpx.RequestFrom(ctx)
	Append(ctx, t.Store, t.Log, storage.AuditEvent{
		Time: t.Now(), Type: typ, UserID: userID, Username: username,
		ClientID: clientID, ClientIP: rq.IPString(), RequestID: rq.ID, Detail: detail,
	})
}
