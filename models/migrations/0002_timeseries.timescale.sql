-- Time series on TimescaleDB: the same columns as the plain variant, as hypertables.
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
);
SELECT create_hypertable('telemetry', 'ts', chunk_time_interval => interval '1 day');

CREATE TABLE events (
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    seq          bigint NOT NULL CHECK (seq >= 0),
    boot         integer NOT NULL DEFAULT 0,
    device_id    text NOT NULL,
    name         text NOT NULL,
    data         jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (device_id, ts, seq)
);
SELECT create_hypertable('events', 'ts', chunk_time_interval => interval '7 days');
