-- 0002_enrolment: TOTP enrolment at login and recovery codes.
--
-- A pending TOTP secret belongs to one auth request (sealed, as every
-- secret) and dies with it. Recovery codes are SHA-256 digests of 128-bit
-- random codes; used_at = 0 marks an unused code.

ALTER TABLE auth_requests ADD COLUMN pending_totp BLOB;

CREATE TABLE recovery_codes (
    user_id    TEXT    NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash  BLOB    NOT NULL,
    created_at INTEGER NOT NULL DEFAULT 0,
    used_at    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, code_hash)
);
