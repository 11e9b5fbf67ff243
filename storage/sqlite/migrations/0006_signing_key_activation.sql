-- 0006_signing_key_activation: a new signing key is published before it
-- signs. `idp keys rotate` adds it with a future activates_at and gives the
-- current key the same time as retired_at, so relying parties holding a
-- cached JWKS meet the new kid only after their cache has expired.
-- Existing keys have activates_at 0: active since they were created.
ALTER TABLE signing_keys ADD COLUMN activates_at INTEGER NOT NULL DEFAULT 0;
