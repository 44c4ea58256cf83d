-- Geofences, the engine's per-device fence state, and the enter/exit events it derives (docs/rules.md,
-- Geofences). models/fences/geojson.py validates a fence before it gets here.
CREATE TABLE geofences (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    geometry    jsonb NOT NULL,  -- GeoJSON: Polygon, MultiPolygon, or Point (a circle with properties.radius_m)
    properties  jsonb NOT NULL DEFAULT '{}',  -- the Feature's other properties, radius_m included
    group_name  text,  -- NULL: applies to every device; else to the devices of this group
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Removed fences stay, so that their events keep naming them; the engine ignores them.
    deleted_at  timestamptz
);
-- Bumped by every statement that changes `geofences`, in its own transaction: the engine's cheap "did
-- anything change" check each cycle. (A max(updated_at) would miss a change whose transaction began
-- before and committed after the newest one the engine had seen.)
CREATE TABLE geofence_version (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    n          bigint NOT NULL
);
INSERT INTO geofence_version (n) VALUES (0);
CREATE FUNCTION bump_geofence_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE geofence_version SET n = n + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER geofences_version AFTER INSERT OR UPDATE OR DELETE ON geofences
    FOR EACH STATEMENT EXECUTE FUNCTION bump_geofence_version();

-- Per device: the fence state after the last point evaluated (engine.geofence.DeviceFenceState, msgpack).
CREATE TABLE engine_fence_state (
    device_id  text PRIMARY KEY,
    ts         timestamptz NOT NULL,
    boot       integer NOT NULL,
    seq        bigint NOT NULL,
    state      bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- Per device: the state *before* the point (ts, boot, seq), kept every few minutes of device time, so that
-- a late point re-runs only the window from the checkpoint before it (engine/fence_stage.py).
CREATE TABLE engine_fence_checkpoints (
    device_id  text NOT NULL,
    ts         timestamptz NOT NULL,
    boot       integer NOT NULL,
    seq        bigint NOT NULL,
    state      bytea NOT NULL,
    PRIMARY KEY (device_id, ts, boot, seq)
);

-- One row per enter or exit. `ts` is the interpolated crossing (device time); `confirmed_*` is the point
-- that confirmed it, which decides which events a re-run of a window replaces. The natural key makes a
-- re-run write nothing twice. No foreign key to devices: like telemetry, history outlives a device.
CREATE TABLE geofence_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id       text NOT NULL,
    fence_id        bigint NOT NULL REFERENCES geofences (id),
    kind            text NOT NULL CHECK (kind IN ('enter', 'exit')),
    ts              timestamptz NOT NULL,
    crossed         boolean NOT NULL,  -- false: the device's first point was already inside
    confirmed_ts    timestamptz NOT NULL,
    confirmed_boot  integer NOT NULL,
    confirmed_seq   bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, fence_id, kind, ts)
);
CREATE INDEX geofence_events_device_idx ON geofence_events (device_id, ts, id);
CREATE INDEX geofence_events_fence_idx ON geofence_events (fence_id, ts);
CREATE INDEX geofence_events_confirmed_idx ON geofence_events (device_id, confirmed_ts);
