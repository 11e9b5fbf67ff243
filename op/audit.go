package op

import (
	"context"
	"fmt"

	"github.com/totp-idp/idp/op/audit"
	"github.com/totp-idp/idp/storage"
)

// audit appends a security event to the audit table and the log (docs/THREAT-MODEL.md
// rule 13). Callers never pass a password, code or token. Events a
// request without any credential can trigger (audit.Anonymous) are rate
// limited by their content.
func (s *Server) audit(ctx context.Context, typ, userID, username, clientID, detail string) {
	if audit.Anonymous[typ] {
		s.auditLimited(ctx, userID+"\x00"+clientID+"\x00"+detail, typ, userID, username, clientID, detail)
		return
	}
	s.writeAudit(ctx, typ, userID, username, clientID, detail)
}

// auditLimited is audit for an event that a request without any
// credential can trigger, rate limited per kind and key (audit.Limiter).
func (s *Server) auditLimited(ctx context.Context, key, typ, userID, username, clientID, detail string) {
	ok, dropped := s.auditLimit.Allow(typ, key, s.cfg.now())
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
	audit.Append(ctx, s.store, s.log, e)
}

func ipString(ri *reqInfo) string {
	if !ri.ip.IsValid() {
		return ""
	}
	return ri.ip.String()
}
