-- 0009_audit_no_replace: INSERT OR REPLACE cannot rewrite an audit event.
--
-- REPLACE deletes the conflicting row without firing delete triggers
-- (recursive_triggers is off), which bypassed the append-only rule of 0001
-- and 0005; an insert that names an existing id is refused instead.
CREATE TRIGGER audit_events_no_replace BEFORE INSERT ON audit_events
WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM audit_events WHERE id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
