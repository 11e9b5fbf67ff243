-- Accounts (issue 12; sqlite 0012): an operator may disable an account or
-- require a new password at the next sign-in; the account page lists
-- sessions with where they came from and needs the time the second factor
-- was last proven in each.
ALTER TABLE users ADD COLUMN disabled_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN password_changed_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN client_ip TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN verified_at BIGINT NOT NULL DEFAULT 0;
