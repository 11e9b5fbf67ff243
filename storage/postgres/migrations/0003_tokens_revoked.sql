-- A redeemed code's tokens may be revoked (the code reused, the user's
-- sessions ended) before they are stored: the token endpoint consumes the
-- code in one transaction and stores the tokens in the next. This marks
-- the request, and storing tokens for a marked request is refused.
ALTER TABLE auth_requests ADD COLUMN tokens_revoked_at BIGINT NOT NULL DEFAULT 0;
