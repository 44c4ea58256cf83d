-- Trips, stops and idle intervals the engine derives from each device's track (engine/trip_stage.py,
-- docs/rules.md#trips-stops-and-idling). Times are device times. Each item's natural key is (device,
-- start): a late point re-evaluates the device from the start of the stop before it and replaces the items
-- from that instant on, so a re-run rewrites the same rows, never adds a second one.
CREATE TABLE trips (
    device_id      text NOT NULL,
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz NOT NULL,
    start_lat      double precision NOT NULL,
    start_lon      double precision NOT NULL,
    end_lat        double precision NOT NULL,
    end_lon        double precision NOT NULL,
    distance_m     double precision NOT NULL,
    from_odometer  boolean NOT NULL,
    duration_s     double precision NOT NULL,
    max_speed_kmh  double precision NOT NULL,
    avg_speed_kmh  double precision NOT NULL,
    fuel_used_pct  double precision,
    complete       boolean NOT NULL,  -- false while the data ends before a parking ended it
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, started_at)
);
CREATE TABLE stops (
    device_id   text NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz NOT NULL,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    duration_s  double precision NOT NULL,
    complete    boolean NOT NULL,  -- false for the last stop, which lasts beyond the data
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, started_at)
);
CREATE TABLE idle_periods (
    device_id   text NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz NOT NULL,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    duration_s  double precision NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, started_at)
);
-- Each device's last point evaluated for trips: a point at or before it is late (the engine re-evaluates
-- from the start of the stop before it); points after it continue the open last stop from `resume_at`
-- (engine.trips.checkpoint: a point of a parking from which nothing before needs reading again), or from
-- the stop's start. Written in the transaction that stores the items, so a takeover resumes exactly where
-- the last owner committed.
CREATE TABLE engine_trip_heads (
    device_id   text PRIMARY KEY,
    ts          timestamptz NOT NULL,
    boot        integer NOT NULL,
    seq         bigint NOT NULL,
    resume_at   timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
