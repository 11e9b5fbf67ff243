-- 0001_init: the whole schema, equivalent to storage/sqlite's migrations
-- 0001 to 0010 applied in order (this backend starts at their end).
--
-- Conventions (storage/storage.go, as in sqlite): times are BIGINT unix
-- seconds UTC with 0 for the zero time; string lists are JSON arrays in
-- TEXT; blobs are BYTEA; flags BOOLEAN. Column names are sqlite's. Rows owned
-- by a user reference users(id) ON DELETE CASCADE, so DeleteUser is one
-- statement. Nullable references (auth_requests.user_id, token user ids) are
-- NULL, never '', so the foreign key holds.

CREATE TABLE users (
    id                   TEXT    PRIMARY KEY,
    username             TEXT    NOT NULL UNIQUE,
    name                 TEXT    NOT NULL DEFAULT '',
    email                TEXT    NOT NULL DEFAULT '',
    email_verified       BOOLEAN NOT NULL DEFAULT false,
    password_hash        TEXT    NOT NULL DEFAULT '',
    created_at           BIGINT  NOT NULL DEFAULT 0,
    -- When the account began waiting for enrolment at login; 0 while it
    -- has a confirmed authenticator (sqlite 0007).
    enroll_pending_since BIGINT  NOT NULL DEFAULT 0,
    -- The key of the name's unknown-name counter, which the account takes
    -- over while it exists (storage.User.NameKey, sqlite 0010).
    name_key             TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE totp_credentials (
    user_id    TEXT    PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret     BYTEA   NOT NULL,
    confirmed  BOOLEAN NOT NULL DEFAULT false,
    last_step  BIGINT  NOT NULL DEFAULT 0,
    created_at BIGINT  NOT NULL DEFAULT 0
);

-- Recovery codes: SHA-256 digests of 128-bit random codes; used_at = 0
-- marks an unused code (sqlite 0002).
CREATE TABLE recovery_codes (
    user_id    TEXT   NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash  BYTEA  NOT NULL,
    created_at BIGINT NOT NULL DEFAULT 0,
    used_at    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, code_hash)
);

-- The attempt guard: one row per user and factor. hard_locked is a column,
-- not a far-future locked_until, so it survives restarts and clock changes
-- and only Unlock (or a success) clears it. budget_* is the leaky bucket of
-- failures that no success empties (sqlite 0008); decay_at, claims and
-- forget_at are the decaying password counter's (sqlite 0010,
-- storage.LockPolicy). last_failure_at holds the last claim's time
-- (storage.Counter.ClaimAt).
CREATE TABLE attempts (
    user_id         TEXT             NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    factor          TEXT             NOT NULL,
    failures        INTEGER          NOT NULL DEFAULT 0,
    locked_until    BIGINT           NOT NULL DEFAULT 0,
    hard_locked     BOOLEAN          NOT NULL DEFAULT false,
    last_failure_at BIGINT           NOT NULL DEFAULT 0,
    last_success_at BIGINT           NOT NULL DEFAULT 0,
    budget_level    DOUBLE PRECISION NOT NULL DEFAULT 0,
    budget_at       BIGINT           NOT NULL DEFAULT 0,
    budget_spent    BOOLEAN          NOT NULL DEFAULT false,
    decay_at        BIGINT           NOT NULL DEFAULT 0,
    claims          BIGINT           NOT NULL DEFAULT 0,
    forget_at       BIGINT           NOT NULL DEFAULT 9223372036854775807,
    PRIMARY KEY (user_id, factor)
);
CREATE INDEX attempts_forget ON attempts (forget_at) WHERE factor = 'password';

-- Failure counters of usernames without an account, locking exactly like
-- an account's password counter (docs/THREAT-MODEL.md R-W5). The key is a
-- keyed hash of the canonical name (sqlite 0003, 0008, 0010).
CREATE TABLE unknown_attempts (
    key             TEXT             PRIMARY KEY,
    failures        INTEGER          NOT NULL DEFAULT 0,
    locked_until    BIGINT           NOT NULL DEFAULT 0,
    hard_locked     BOOLEAN          NOT NULL DEFAULT false,
    last_failure_at BIGINT           NOT NULL DEFAULT 0,
    budget_level    DOUBLE PRECISION NOT NULL DEFAULT 0,
    budget_at       BIGINT           NOT NULL DEFAULT 0,
    budget_spent    BOOLEAN          NOT NULL DEFAULT false,
    decay_at        BIGINT           NOT NULL DEFAULT 0,
    claims          BIGINT           NOT NULL DEFAULT 0,
    forget_at       BIGINT           NOT NULL DEFAULT 9223372036854775807
);
CREATE INDEX unknown_attempts_forget ON unknown_attempts (forget_at);

-- Remembered devices (OWASP's device cookie) with their own password
-- counter in the counter columns (sqlite 0010). id_hash is the SHA-256 of
-- the cookie's secret.
CREATE TABLE devices (
    id_hash         BYTEA            PRIMARY KEY,
    user_id         TEXT             NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at      BIGINT           NOT NULL DEFAULT 0,
    last_used_at    BIGINT           NOT NULL DEFAULT 0,
    expires_at      BIGINT           NOT NULL DEFAULT 0,
    user_agent      TEXT             NOT NULL DEFAULT '',
    failures        INTEGER          NOT NULL DEFAULT 0,
    locked_until    BIGINT           NOT NULL DEFAULT 0,
    hard_locked     BOOLEAN          NOT NULL DEFAULT false,
    budget_level    DOUBLE PRECISION NOT NULL DEFAULT 0,
    budget_at       BIGINT           NOT NULL DEFAULT 0,
    budget_spent    BOOLEAN          NOT NULL DEFAULT false,
    decay_at        BIGINT           NOT NULL DEFAULT 0,
    claims          BIGINT           NOT NULL DEFAULT 0,
    last_failure_at BIGINT           NOT NULL DEFAULT 0
);
CREATE INDEX devices_user ON devices (user_id, last_used_at);
CREATE INDEX devices_expires ON devices (expires_at);

CREATE TABLE clients (
    id                        TEXT    PRIMARY KEY,
    secret_hash               BYTEA,
    name                      TEXT    NOT NULL DEFAULT '',
    redirect_uris             TEXT    NOT NULL DEFAULT '[]',
    post_logout_redirect_uris TEXT    NOT NULL DEFAULT '[]',
    public                    BOOLEAN NOT NULL DEFAULT false,
    pkce_required             BOOLEAN NOT NULL DEFAULT false,
    created_at                BIGINT  NOT NULL DEFAULT 0
);

-- client_id has no foreign key: DeleteClient removes the client's requests
-- and tokens itself, and callers need not register a client before testing
-- protocol state. pending_totp is a sealed secret offered for enrolment in
-- this flow (sqlite 0002); session_hash the SSO session the login opened or
-- used (sqlite 0004).
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
    max_age               BIGINT,
    acr_values            TEXT    NOT NULL DEFAULT '[]',
    login_hint            TEXT    NOT NULL DEFAULT '',
    hint_subject          TEXT    NOT NULL DEFAULT '',
    ui_locales            TEXT    NOT NULL DEFAULT '[]',
    stage                 TEXT    NOT NULL DEFAULT 'created',
    user_id               TEXT    REFERENCES users(id) ON DELETE CASCADE,
    binding_hash          BYTEA,
    password_at           BIGINT  NOT NULL DEFAULT 0,
    auth_time             BIGINT  NOT NULL DEFAULT 0,
    amr                   TEXT    NOT NULL DEFAULT '[]',
    acr                   TEXT    NOT NULL DEFAULT '',
    code_hash             BYTEA   UNIQUE,
    code_expires_at       BIGINT  NOT NULL DEFAULT 0,
    code_used_at          BIGINT  NOT NULL DEFAULT 0,
    created_at            BIGINT  NOT NULL DEFAULT 0,
    expires_at            BIGINT  NOT NULL DEFAULT 0,
    pending_totp          BYTEA,
    session_hash          BYTEA
);
CREATE INDEX auth_requests_user ON auth_requests (user_id);
CREATE INDEX auth_requests_client ON auth_requests (client_id);
CREATE INDEX auth_requests_expires ON auth_requests (expires_at);
-- Not in sqlite: EndSession cancels the sign-ins of a session by it.
CREATE INDEX auth_requests_session ON auth_requests (session_hash);

CREATE TABLE refresh_tokens (
    id              TEXT   PRIMARY KEY,
    token_hash      BYTEA  NOT NULL UNIQUE,
    family_id       TEXT   NOT NULL,
    client_id       TEXT   NOT NULL,
    user_id         TEXT   REFERENCES users(id) ON DELETE CASCADE,
    scopes          TEXT   NOT NULL DEFAULT '[]',
    audience        TEXT   NOT NULL DEFAULT '[]',
    amr             TEXT   NOT NULL DEFAULT '[]',
    acr             TEXT   NOT NULL DEFAULT '',
    auth_time       BIGINT NOT NULL DEFAULT 0,
    auth_request_id TEXT   NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL DEFAULT 0,
    expires_at      BIGINT NOT NULL DEFAULT 0,
    used_at         BIGINT NOT NULL DEFAULT 0,
    revoked_at      BIGINT NOT NULL DEFAULT 0,
    session_hash    BYTEA
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_auth_request ON refresh_tokens (auth_request_id);
CREATE INDEX refresh_tokens_user_client ON refresh_tokens (user_id, client_id);
CREATE INDEX refresh_tokens_client ON refresh_tokens (client_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_hash);

CREATE TABLE access_tokens (
    id               TEXT   PRIMARY KEY,
    client_id        TEXT   NOT NULL,
    user_id          TEXT   REFERENCES users(id) ON DELETE CASCADE,
    scopes           TEXT   NOT NULL DEFAULT '[]',
    audience         TEXT   NOT NULL DEFAULT '[]',
    auth_request_id  TEXT   NOT NULL DEFAULT '',
    refresh_token_id TEXT   NOT NULL DEFAULT '',
    created_at       BIGINT NOT NULL DEFAULT 0,
    expires_at       BIGINT NOT NULL DEFAULT 0,
    revoked_at       BIGINT NOT NULL DEFAULT 0,
    session_hash     BYTEA
);
CREATE INDEX access_tokens_auth_request ON access_tokens (auth_request_id);
CREATE INDEX access_tokens_refresh_token ON access_tokens (refresh_token_id);
CREATE INDEX access_tokens_user_client ON access_tokens (user_id, client_id);
CREATE INDEX access_tokens_client ON access_tokens (client_id);
CREATE INDEX access_tokens_expires ON access_tokens (expires_at);
CREATE INDEX access_tokens_session ON access_tokens (session_hash);

CREATE TABLE sessions (
    id_hash      BYTEA  PRIMARY KEY,
    user_id      TEXT   NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    auth_time    BIGINT NOT NULL DEFAULT 0,
    amr          TEXT   NOT NULL DEFAULT '[]',
    acr          TEXT   NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL DEFAULT 0,
    last_seen_at BIGINT NOT NULL DEFAULT 0,
    expires_at   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- retired_at = 0 marks the key that is not retired (the newest, possibly
-- not yet active: activates_at, sqlite 0006); the partial unique index
-- makes "at most one" a property of the schema, not only of the code.
CREATE TABLE signing_keys (
    id           TEXT   PRIMARY KEY,
    algorithm    TEXT   NOT NULL,
    private_key  BYTEA  NOT NULL,
    public_jwk   BYTEA  NOT NULL,
    created_at   BIGINT NOT NULL DEFAULT 0,
    retired_at   BIGINT NOT NULL DEFAULT 0,
    expires_at   BIGINT NOT NULL DEFAULT 0,
    activates_at BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (retired_at) WHERE retired_at = 0;

CREATE TABLE settings (
    name  TEXT  PRIMARY KEY,
    value BYTEA NOT NULL
);

-- Append-only. No foreign key: the trail outlives the users it names. The
-- store assigns ids (GENERATED ALWAYS: an insert cannot name one), and a
-- sequence never hands one out twice.
CREATE TABLE audit_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time       BIGINT NOT NULL DEFAULT 0,
    type       TEXT   NOT NULL,
    user_id    TEXT   NOT NULL DEFAULT '',
    username   TEXT   NOT NULL DEFAULT '',
    client_id  TEXT   NOT NULL DEFAULT '',
    client_ip  TEXT   NOT NULL DEFAULT '',
    request_id TEXT   NOT NULL DEFAULT '',
    detail     TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_user ON audit_events (user_id, id);
CREATE INDEX audit_events_time ON audit_events (time);

-- Audit events older than the retention may go (sqlite 0005): the guard
-- refuses to delete an event unless its time is before the cutoff that
-- DeleteAuditBefore sets, for the length of its own transaction, in
-- audit_retention (other transactions keep seeing the committed 0). Any
-- other DELETE meets cutoff 0 and is refused; UPDATE (also that of
-- INSERT … ON CONFLICT DO UPDATE, PostgreSQL's way to rewrite a row) is
-- always refused, and so is TRUNCATE, which fires no row trigger.
CREATE TABLE audit_retention (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    cutoff BIGINT  NOT NULL DEFAULT 0
);
INSERT INTO audit_retention (id, cutoff) VALUES (1, 0);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.time < COALESCE((SELECT cutoff FROM audit_retention WHERE id = 1), 0) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit_events: only events older than the retention cutoff may be deleted'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
