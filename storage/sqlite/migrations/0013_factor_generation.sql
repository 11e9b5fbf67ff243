-- The user's own changes of factors (a new authenticator, new recovery
-- codes; the account page) are conditional on the generation they were
-- offered against, so two of them sent at once cannot both succeed and
-- show the user a key or codes that the other replaced (review of
-- issue 12, A-F1).
ALTER TABLE totp_credentials ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
