-- Every change to an application after it was written is announced on `applications_changed`
-- with its id: each API process caches applications read back by their owners and drops the
-- entry on this notification (see src/application_cache.rs). The API itself only inserts.
CREATE FUNCTION notify_application_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('applications_changed', OLD.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER applications_changed
    AFTER UPDATE OR DELETE ON applications
    FOR EACH ROW EXECUTE FUNCTION notify_application_changed();

CREATE FUNCTION notify_applications_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('applications_changed', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER applications_truncated
    AFTER TRUNCATE ON applications
    FOR EACH STATEMENT EXECUTE FUNCTION notify_applications_truncated();
