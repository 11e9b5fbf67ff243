-- 0005_audit_retention: audit events older than the retention may go.
--
-- The trail stays append-only for everything else: the delete trigger of
-- 0001 is replaced by one that refuses to delete an event unless its time
-- is before the cutoff that DeleteAuditBefore sets, for the length of its
-- own transaction, in audit_retention. Any other DELETE meets cutoff 0 and
-- is refused.
CREATE TABLE audit_retention (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    cutoff INTEGER NOT NULL DEFAULT 0
);
INSERT INTO audit_retention (id, cutoff) VALUES (1, 0);

DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_delete_expired_only BEFORE DELETE ON audit_events
WHEN OLD.time >= COALESCE((SELECT cutoff FROM audit_retention WHERE id = 1), 0)
BEGIN
    SELECT RAISE(ABORT, 'audit_events: only events older than the retention cutoff may be deleted');
END;
