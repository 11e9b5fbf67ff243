-- 0004_session_links: which SSO session a login and its tokens came from.
--
-- RP-initiated logout ends one browser's SSO session and revokes only the
-- tokens issued through it (never offline_access grants); before this an
-- id_token_hint alone revoked every token of the user at the client,
-- including grants made later on other devices.
ALTER TABLE auth_requests  ADD COLUMN session_hash BLOB;
ALTER TABLE access_tokens  ADD COLUMN session_hash BLOB;
ALTER TABLE refresh_tokens ADD COLUMN session_hash BLOB;
CREATE INDEX access_tokens_session  ON access_tokens (session_hash);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_hash);
