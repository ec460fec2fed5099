-- Every write to the catalogue is announced on `catalogue_changed`: each API process keeps the
-- catalogue in memory and reloads it on this notification (see src/catalogue.rs). Statement
-- level, so a bulk update is one reload; NOTIFY is delivered at commit, never for a rollback.
CREATE FUNCTION notify_catalogue_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalogue_changed', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER scholarships_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON scholarships
    FOR EACH STATEMENT EXECUTE FUNCTION notify_catalogue_changed();
