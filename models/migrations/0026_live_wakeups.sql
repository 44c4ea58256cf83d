-- A NOTIFY when a transaction adds alert changes or command transitions: the API's live readers
-- (api/live/alerts.py, api/live/commands.py) read at once instead of at their next poll. Per statement,
-- and PostgreSQL folds a transaction's identical notifications into one, delivered at COMMIT.
CREATE FUNCTION notify_live_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END
$$;
CREATE TRIGGER alert_events_wake AFTER INSERT ON alert_events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_live_change('fleet_alert_events');
CREATE TRIGGER command_events_wake AFTER INSERT ON command_events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_live_change('fleet_command_events');
