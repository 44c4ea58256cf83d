-- Presence over time: every change of devices.presence, whoever made it (the bridge's batch, the sweep,
-- the API), recorded by a trigger, so the writers need not know. `at` is the registry's presence_since
-- (server time of the change); GET /api/v1/devices/{id}/presence turns the rows into intervals.
-- No foreign key: like telemetry, a deleted device's history stays until retention removes it
-- (models/partitions.py `maintain`, with the telemetry's retention_days).
CREATE TABLE presence_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id text NOT NULL,
    at timestamptz NOT NULL,
    presence text NOT NULL CHECK (presence IN ('online', 'offline')),
    source text CHECK (source IN ('status', 'heartbeat'))
);
CREATE INDEX presence_history_device_at_idx ON presence_history (device_id, at);
CREATE INDEX presence_history_at_idx ON presence_history (at);

CREATE FUNCTION record_presence_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.presence IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.presence IS DISTINCT FROM OLD.presence) THEN
        INSERT INTO presence_history (device_id, at, presence, source)
        VALUES (NEW.id, COALESCE(NEW.presence_since, now()), NEW.presence, NEW.presence_source);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER devices_presence_history
    AFTER INSERT OR UPDATE OF presence ON devices
    FOR EACH ROW EXECUTE FUNCTION record_presence_change();

-- What is known already: each device's current presence, since when.
INSERT INTO presence_history (device_id, at, presence, source)
SELECT id, COALESCE(presence_since, now()), presence, presence_source FROM devices WHERE presence IS NOT NULL;
