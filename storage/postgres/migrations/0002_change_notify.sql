-- Every replica caches clients and signing keys. A change to either tells
-- all of them at once (LISTEN idp_changes, Store.ListenChanges); the timed
-- re-read stays the fallback. Statement triggers fire for any writer (the
-- CLI, another replica, a manual UPDATE), and NOTIFY is delivered at
-- commit, so no replica re-reads before the change is visible.
CREATE FUNCTION idp_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('idp_changes', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER clients_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION idp_notify_change();
CREATE TRIGGER signing_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION idp_notify_change();
