-- Mailed single-use links (issue 13): an address verification or a
-- password reset. Only the SHA-256 digest of the link's token is kept.
-- Rows outlive their use for the rate limits (storage.LinkLimit) and go
-- LinkRetention after expiry (GC).
CREATE TABLE mail_links (
    digest     BLOB    PRIMARY KEY,
    purpose    TEXT    NOT NULL,
    user_id    TEXT    NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER NOT NULL DEFAULT 0,
    -- tries: second-factor codes posted with a reset link, counted before
    -- each is checked (storage.Store.CountLinkTry).
    tries      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX mail_links_user ON mail_links (user_id, purpose, created_at);
CREATE INDEX mail_links_email ON mail_links (email COLLATE NOCASE, purpose, created_at);
CREATE INDEX mail_links_expires ON mail_links (expires_at);
CREATE INDEX users_email ON users (email COLLATE NOCASE) WHERE email_verified = 1;
