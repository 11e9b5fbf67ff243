-- 0001_init: the initial schema.
--
-- Conventions (storage/storage.go): times are INTEGER unix seconds UTC with 0
-- for the zero time; string lists are JSON arrays in TEXT; booleans are
-- INTEGER 0/1. Rows owned by a user reference users(id) ON DELETE CASCADE,
-- so DeleteUser is one statement. Nullable references (auth_requests.user_id,
-- token user ids) are NULL, never '', so the foreign key holds.

CREATE TABLE users (
    id             TEXT    PRIMARY KEY,
    username       TEXT    NOT NULL UNIQUE,
    name           TEXT    NOT NULL DEFAULT '',
    email          TEXT    NOT NULL DEFAULT '',
    email_verified INTEGER NOT NULL DEFAULT 0,
    password_hash  TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE totp_credentials (
    user_id    TEXT    PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret     BLOB    NOT NULL,
    confirmed  INTEGER NOT NULL DEFAULT 0,
    last_step  INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL DEFAULT 0
);

-- The attempt guard: one row per user and factor. hard_locked is a column,
-- not a far-future locked_until, so it survives restarts and clock changes
-- and only Unlock (or a success) clears it.
CREATE TABLE attempts (
    user_id         TEXT    NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    factor          TEXT    NOT NULL,
    failures        INTEGER NOT NULL DEFAULT 0,
    locked_until    INTEGER NOT NULL DEFAULT 0,
    hard_locked     INTEGER NOT NULL DEFAULT 0,
    last_failure_at INTEGER NOT NULL DEFAULT 0,
    last_success_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, factor)
);

CREATE TABLE clients (
    id                        TEXT    PRIMARY KEY,
    secret_hash               BLOB,
    name                      TEXT    NOT NULL DEFAULT '',
    redirect_uris             TEXT    NOT NULL DEFAULT '[]',
    post_logout_redirect_uris TEXT    NOT NULL DEFAULT '[]',
    public                    INTEGER NOT NULL DEFAULT 0,
    pkce_required             INTEGER NOT NULL DEFAULT 0,
    created_at                INTEGER NOT NULL DEFAULT 0
);

-- client_id has no foreign key: DeleteClient removes the client's requests
-- and tokens itself, and callers need not register a client before testing
-- protocol state.
CREATE TABLE auth_requests (
    id                    TEXT    PRIMARY KEY,
    client_id             TEXT    NOT NULL,
    redirect_uri          TEXT    NOT NULL DEFAULT '',
    scopes                TEXT    NOT NULL DEFAULT '[]',
    state                 TEXT    NOT NULL DEFAULT '',
    nonce                 TEXT    NOT NULL DEFAULT '',
    response_type         TEXT    NOT NULL DEFAULT '',
    response_mode         TEXT    NOT NULL DEFAULT '',
    code_challenge        TEXT    NOT NULL DEFAULT '',
    code_challenge_method TEXT    NOT NULL DEFAULT '',
    prompt                TEXT    NOT NULL DEFAULT '[]',
    max_age               INTEGER,
    acr_values            TEXT    NOT NULL DEFAULT '[]',
    login_hint            TEXT    NOT NULL DEFAULT '',
    hint_subject          TEXT    NOT NULL DEFAULT '',
    ui_locales            TEXT    NOT NULL DEFAULT '[]',
    stage                 TEXT    NOT NULL DEFAULT 'created',
    user_id               TEXT    REFERENCES users(id) ON DELETE CASCADE,
    binding_hash          BLOB,
    password_at           INTEGER NOT NULL DEFAULT 0,
    auth_time             INTEGER NOT NULL DEFAULT 0,
    amr                   TEXT    NOT NULL DEFAULT '[]',
    acr                   TEXT    NOT NULL DEFAULT '',
    code_hash             BLOB    UNIQUE,
    code_expires_at       INTEGER NOT NULL DEFAULT 0,
    code_used_at          INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL DEFAULT 0,
    expires_at            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX auth_requests_user ON auth_requests (user_id);
CREATE INDEX auth_requests_client ON auth_requests (client_id);
CREATE INDEX auth_requests_expires ON auth_requests (expires_at);

CREATE TABLE refresh_tokens (
    id              TEXT    PRIMARY KEY,
    token_hash      BLOB    NOT NULL UNIQUE,
    family_id       TEXT    NOT NULL,
    client_id       TEXT    NOT NULL,
    user_id         TEXT    REFERENCES users(id) ON DELETE CASCADE,
    scopes          TEXT    NOT NULL DEFAULT '[]',
    audience        TEXT    NOT NULL DEFAULT '[]',
    amr             TEXT    NOT NULL DEFAULT '[]',
    acr             TEXT    NOT NULL DEFAULT '',
    auth_time       INTEGER NOT NULL DEFAULT 0,
    auth_request_id TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL DEFAULT 0,
    expires_at      INTEGER NOT NULL DEFAULT 0,
    used_at         INTEGER NOT NULL DEFAULT 0,
    revoked_at      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_auth_request ON refresh_tokens (auth_request_id);
CREATE INDEX refresh_tokens_user_client ON refresh_tokens (user_id, client_id);
CREATE INDEX refresh_tokens_client ON refresh_tokens (client_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

CREATE TABLE access_tokens (
    id               TEXT    PRIMARY KEY,
    client_id        TEXT    NOT NULL,
    user_id          TEXT    REFERENCES users(id) ON DELETE CASCADE,
    scopes           TEXT    NOT NULL DEFAULT '[]',
    audience         TEXT    NOT NULL DEFAULT '[]',
    auth_request_id  TEXT    NOT NULL DEFAULT '',
    refresh_token_id TEXT    NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL DEFAULT 0,
    expires_at       INTEGER NOT NULL DEFAULT 0,
    revoked_at       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX access_tokens_auth_request ON access_tokens (auth_request_id);
CREATE INDEX access_tokens_refresh_token ON access_tokens (refresh_token_id);
CREATE INDEX access_tokens_user_client ON access_tokens (user_id, client_id);
CREATE INDEX access_tokens_client ON access_tokens (client_id);
CREATE INDEX access_tokens_expires ON access_tokens (expires_at);

CREATE TABLE sessions (
    id_hash      BLOB    PRIMARY KEY,
    user_id      TEXT    NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    auth_time    INTEGER NOT NULL DEFAULT 0,
    amr          TEXT    NOT NULL DEFAULT '[]',
    acr          TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL DEFAULT 0,
    last_seen_at INTEGER NOT NULL DEFAULT 0,
    expires_at   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- retired_at = 0 marks the active key; the partial unique index makes "at
-- most one active key" a property of the schema, not only of the code.
CREATE TABLE signing_keys (
    id          TEXT    PRIMARY KEY,
    algorithm   TEXT    NOT NULL,
    private_key BLOB    NOT NULL,
    public_jwk  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL DEFAULT 0,
    retired_at  INTEGER NOT NULL DEFAULT 0,
    expires_at  INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (retired_at) WHERE retired_at = 0;

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- Append-only. No foreign key: the trail outlives the users it names.
CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    time       INTEGER NOT NULL DEFAULT 0,
    type       TEXT    NOT NULL,
    user_id    TEXT    NOT NULL DEFAULT '',
    username   TEXT    NOT NULL DEFAULT '',
    client_id  TEXT    NOT NULL DEFAULT '',
    client_ip  TEXT    NOT NULL DEFAULT '',
    request_id TEXT    NOT NULL DEFAULT '',
    detail     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_user ON audit_events (user_id, id);
CREATE INDEX audit_events_time ON audit_events (time);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
