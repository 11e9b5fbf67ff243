-- 0010_decay_devices: password counters that decay, and remembered devices.
--
-- A password counter is no longer reset by the owner's login (that reset
-- told an account from a name without one): it forgets one failure every
-- LockPolicy.Decay, measured from decay_at, and has no hard lock (it
-- refuses while it holds the hard limit). forget_at is when a counter
-- becomes the same as none (storage.LockPolicy.ForgetAt); garbage
-- collection deletes password counters of accounts and of unknown names by
-- that one rule.
-- claims numbers the allowed claims, so that a right password gives back
-- exactly its own (storage.LockPolicy.Succeeded).
ALTER TABLE attempts ADD COLUMN decay_at  INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN claims    INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN forget_at INTEGER NOT NULL DEFAULT 9223372036854775807;
ALTER TABLE unknown_attempts ADD COLUMN decay_at  INTEGER NOT NULL DEFAULT 0;
ALTER TABLE unknown_attempts ADD COLUMN claims    INTEGER NOT NULL DEFAULT 0;
ALTER TABLE unknown_attempts ADD COLUMN forget_at INTEGER NOT NULL DEFAULT 9223372036854775807;

-- Existing password counters: hard locks become counts that decay from the
-- last failure (one a day, the default), for accounts and names alike.
UPDATE attempts SET hard_locked = 0, decay_at = last_failure_at,
    forget_at = max(locked_until, last_failure_at + failures * 86400)
    WHERE factor = 'password';
UPDATE unknown_attempts SET hard_locked = 0, decay_at = last_failure_at,
    forget_at = max(locked_until, last_failure_at + failures * 86400);
CREATE INDEX attempts_forget ON attempts (forget_at) WHERE factor = 'password';
DROP INDEX unknown_attempts_last_failure;
CREATE INDEX unknown_attempts_forget ON unknown_attempts (forget_at);

-- The key of the name's counter while it had no account: creating the
-- account takes that counter over, deleting it gives it back
-- (storage.User.NameKey), so neither shows to someone holding the name at
-- the limit. Accounts created before this migration have none.
ALTER TABLE users ADD COLUMN name_key TEXT NOT NULL DEFAULT '';

-- A remembered device (OWASP's "device cookie"): a browser that completed
-- a sign-in with both factors. Its password attempts count on its own
-- counter (the columns below, as in attempts), not on the account's shared
-- one, so that a lock an attacker causes does not reach the owner's
-- devices. id_hash is the SHA-256 of the cookie's secret; the cookie
-- itself is never stored.
CREATE TABLE devices (
    id_hash         BLOB    PRIMARY KEY,
    user_id         TEXT    NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at      INTEGER NOT NULL DEFAULT 0,
    last_used_at    INTEGER NOT NULL DEFAULT 0,
    expires_at      INTEGER NOT NULL DEFAULT 0,
    user_agent      TEXT    NOT NULL DEFAULT '',
    failures        INTEGER NOT NULL DEFAULT 0,
    locked_until    INTEGER NOT NULL DEFAULT 0,
    hard_locked     INTEGER NOT NULL DEFAULT 0,
    budget_level    REAL    NOT NULL DEFAULT 0,
    budget_at       INTEGER NOT NULL DEFAULT 0,
    budget_spent    INTEGER NOT NULL DEFAULT 0,
    decay_at        INTEGER NOT NULL DEFAULT 0,
    claims          INTEGER NOT NULL DEFAULT 0,
    last_failure_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX devices_user ON devices (user_id, last_used_at);
CREATE INDEX devices_expires ON devices (expires_at);
