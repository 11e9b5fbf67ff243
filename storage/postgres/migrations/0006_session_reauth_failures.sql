-- Wrong second-factor codes proven again in one session (the account
-- page), counted before each is checked, so that the session that made
-- them ends after a few, whoever else is failing on the account's shared
-- counter (reviews of issue 12, C-F3 and D-2). A migration of its own: a
-- database already at the previous version must get it too (D-1).
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS reauth_failures INTEGER NOT NULL DEFAULT 0;
