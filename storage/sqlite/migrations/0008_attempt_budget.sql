-- 0008_attempt_budget: a failure budget that a success does not refill.
--
-- The consecutive-failure counter is reset by every success, so an attacker
-- who knows the password could make a few wrong TOTP guesses after each of
-- the owner's logins for ever. budget_level is a leaky bucket of failures
-- (one leaks out every window/budget); a success leaves it alone; when it
-- is full the factor is hard-locked (budget_spent) until an operator
-- unlocks (storage.LockPolicy.Claim).
ALTER TABLE attempts ADD COLUMN budget_level REAL    NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN budget_at    INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN budget_spent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE unknown_attempts ADD COLUMN budget_level REAL    NOT NULL DEFAULT 0;
ALTER TABLE unknown_attempts ADD COLUMN budget_at    INTEGER NOT NULL DEFAULT 0;
ALTER TABLE unknown_attempts ADD COLUMN budget_spent INTEGER NOT NULL DEFAULT 0;
