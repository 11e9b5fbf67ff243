package op

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/totp-idp/idp/storage"
)

// audit appends a security event to the audit table and the log (docs/THREAT-MODEL.md
// rule 13). Callers never pass a password, code or token. Events a
// request without any credential can trigger (anonymousEvents) are rate
// limited by their content.
func (s *Server) audit(ctx context.Context, typ, userID, username, clientID, detail string) {
	if anonymousEvents[typ] {
		s.auditLimited(ctx, userID+"\x00"+clientID+"\x00"+detail, typ, userID, username, clientID, detail)
		return
	}
	s.writeAudit(ctx, typ, userID, username, clientID, detail)
}

// auditLimited is audit for an event that a request without any
// credential can trigger, rate limited per kind and key (auditlimit.go).
func (s *Server) auditLimited(ctx context.Context, key, typ, userID, username, clientID, detail string) {
	ok, dropped := s.auditLimit.allow(typ, key, s.cfg.now())
	if !ok {
		s.metrics.inc("idp_audit_suppressed_total", fmt.Sprintf("event=%q", typ))
		return
	}
	if dropped > 0 {
		detail += fmt.Sprintf(" (%d more %s events not recorded before this one)", dropped, typ)
	}
	s.writeAudit(ctx, typ, userID, username, clientID, detail)
}

func (s *Server) writeAudit(ctx context.Context, typ, userID, username, clientID, detail string) {
	ri := infoFrom(ctx)
	e := storage.AuditEvent{
		Time: s.cfg.now(), Type: typ, UserID: userID, Username: username,
		ClientID: clientID, ClientIP: ipString(ri), RequestID: ri.id, Detail: detail,
	}
	appendAudit(ctx, s.store, s.log, e)
}

// appendAudit writes e to the log and the audit table: the one place every
// event of the server and of the operator CLI goes through
// (docs/THREAT-MODEL.md rule 13). log may be nil (the CLI without one).
func appendAudit(ctx context.Context, st storage.Store, log *slog.Logger, e storage.AuditEvent) {
	if log != nil {
		// slog's text and JSON handlers quote values, so a username with
		// a newline cannot forge a log line. The row's own request id and
		// address are written, so requestHandler must not add them again.
		log.LogAttrs(context.Background(), slog.LevelInfo, "audit",
			slog.String("event", e.Type), slog.String("user_id", e.UserID), slog.String("username", e.Username),
			slog.String("client_id", e.ClientID), slog.String("ip", e.ClientIP),
			slog.String("request_id", e.RequestID), slog.String("detail", e.Detail))
	}
	// The audit row must not be lost because the request was cancelled.
	if err := st.AppendAudit(context.WithoutCancel(ctx), e); err != nil && log != nil {
		log.Error("audit write failed", "event", e.Type, "request_id", e.RequestID, "err", err)
	}
}

func ipString(ri *reqInfo) string {
	if !ri.ip.IsValid() {
		return ""
	}
	return ri.ip.String()
}
