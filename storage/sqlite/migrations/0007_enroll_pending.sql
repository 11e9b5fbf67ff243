-- 0007_enroll_pending: when an account began waiting for enrolment.
--
-- An account without a confirmed authenticator (user add --enroll-at-login,
-- idp user reset-totp) signs in with its password alone until someone
-- binds an authenticator to it; the provider allows that only for
-- idp serve --enroll-within after this time. 0 for accounts that have an
-- authenticator. Accounts already waiting when this migration runs start
-- their window now: when they began waiting was not recorded.
ALTER TABLE users ADD COLUMN enroll_pending_since INTEGER NOT NULL DEFAULT 0;

UPDATE users SET enroll_pending_since = CAST(strftime('%s', 'now') AS INTEGER)
WHERE id NOT IN (SELECT user_id FROM totp_credentials WHERE confirmed = 1);
