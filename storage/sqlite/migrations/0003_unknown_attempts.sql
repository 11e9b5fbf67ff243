-- 0003_unknown_attempts: failure counters for usernames without an account.
--
-- They lock exactly like an account's password counter, so a lock tells an
-- attacker nothing about which names exist (docs/THREAT-MODEL.md R-W5). The key
-- is a keyed hash of the canonical name: no submitted name is stored.
CREATE TABLE unknown_attempts (
    key             TEXT    PRIMARY KEY,
    failures        INTEGER NOT NULL DEFAULT 0,
    locked_until    INTEGER NOT NULL DEFAULT 0,
    hard_locked     INTEGER NOT NULL DEFAULT 0,
    last_failure_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX unknown_attempts_last_failure ON unknown_attempts (last_failure_at);
