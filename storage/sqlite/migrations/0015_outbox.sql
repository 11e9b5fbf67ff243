-- The outbox (issue 13): a mail is a row written in the same transaction
-- as the event that causes it; a sender leases due rows, delivers them,
-- and marks them sent, or gives up after a documented time. The body is
-- sealed by the provider (it may hold a link's token).
CREATE TABLE outbox (
    id              TEXT    PRIMARY KEY,
    user_id         TEXT    NOT NULL DEFAULT '',
    kind            TEXT    NOT NULL,
    to_addr         TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    sent_at         INTEGER NOT NULL DEFAULT 0,
    failed_at       INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at = 0 AND failed_at = 0;
CREATE INDEX outbox_created ON outbox (created_at);
