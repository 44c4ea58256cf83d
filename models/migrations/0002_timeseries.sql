-- Time series, plain PostgreSQL: range partitions by day on ts, created ahead of time by
-- models.partitions, plus a default partition so that one odd timestamp never fails a whole batch.
-- Columns are ordered widest first to avoid alignment padding; known truck and sensor metrics get typed
-- columns (a NULL costs one bit), anything else goes to `extra`.
CREATE TABLE telemetry (
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    seq          bigint NOT NULL CHECK (seq >= 0),
    lat          double precision CHECK (lat BETWEEN -90 AND 90),
    lon          double precision CHECK (lon BETWEEN -180 AND 180),
    odometer     double precision,
    boot         integer NOT NULL DEFAULT 0,
    alt          real,
    speed        real,
    heading      real,
    accuracy     real,
    fuel         real,
    engine_temp  real,
    temperature  real,
    pressure     real,
    vibration    real,
    flow         real,
    level        real,
    battery      real,
    quality      smallint,
    device_id    text NOT NULL,
    extra        jsonb,
    agg          jsonb,
    PRIMARY KEY (device_id, ts, seq)
) PARTITION BY RANGE (ts);
CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT;

CREATE TABLE events (
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    seq          bigint NOT NULL CHECK (seq >= 0),
    boot         integer NOT NULL DEFAULT 0,
    device_id    text NOT NULL,
    name         text NOT NULL,
    data         jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (device_id, ts, seq)
) PARTITION BY RANGE (ts);
CREATE TABLE events_default PARTITION OF events DEFAULT;
