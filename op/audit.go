package op

import (
	"context"
	"log/slog"

	"github.com/totp-idp/idp/storage"
)

// audit appends a security event to the audit table and the log (threat
// model rule 13). Callers never pass a password, code or token.
func (s *Server) audit(ctx context.Context, typ, userID, username, clientID, detail string) {
	ri := infoFrom(ctx)
	e := storage.AuditEvent{
		Time: s.cfg.now(), Type: typ, UserID: userID, Username: username,
		ClientID: clientID, ClientIP: ipString(ri), RequestID: ri.id, Detail: detail,
	}
	// slog's text and JSON handlers quote values, so a username with a
	// newline cannot forge a log line.
	s.log.LogAttrs(ctx, slog.LevelInfo, "audit",
		slog.String("event", typ), slog.String("user_id", userID), slog.String("username", username),
		slog.String("client_id", clientID), slog.String("ip", e.ClientIP),
		slog.String("request_id", ri.id), slog.String("detail", detail))
	// The audit row must not be lost because the request was cancelled.
	if err := s.store.AppendAudit(context.WithoutCancel(ctx), e); err != nil {
		s.log.Error("audit write failed", "event", typ, "err", err)
	}
}

func ipString(ri *reqInfo) string {
	if !ri.ip.IsValid() {
		return ""
	}
	return ri.ip.String()
}
