-- Time-bucket rollups on TimescaleDB: continuous aggregates with the names and columns of the plain
-- tables (models/rollups.py), so the API reads either the same way. Real-time aggregation is on, so
-- buckets not yet materialised are computed from the raw rows when read; late samples invalidate their
-- buckets, which the refresh policies recompute. 1 h is a hierarchical aggregate over 1 min (2.9+).
-- Differences from the plain tables: the last fix is chosen by ts alone (ties are not broken by seq).
-- Retention of both is set in timescale_features.sql, with the telemetry's.
CREATE MATERIALIZED VIEW telemetry_1m WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT device_id,
       time_bucket(interval '1 minute', ts) AS ts,
       count(*) AS samples,
       count(fuel) AS fuel_n, coalesce(sum(fuel::float8), 0) AS fuel_sum, min(fuel) AS fuel_min, max(fuel) AS fuel_max,
       count(engine_temp) AS engine_temp_n, coalesce(sum(engine_temp::float8), 0) AS engine_temp_sum,
       min(engine_temp) AS engine_temp_min, max(engine_temp) AS engine_temp_max,
       count(odometer) AS odometer_n, coalesce(sum(odometer), 0) AS odometer_sum,
       min(odometer) AS odometer_min, max(odometer) AS odometer_max,
       count(temperature) AS temperature_n, coalesce(sum(temperature::float8), 0) AS temperature_sum,
       min(temperature) AS temperature_min, max(temperature) AS temperature_max,
       count(pressure) AS pressure_n, coalesce(sum(pressure::float8), 0) AS pressure_sum,
       min(pressure) AS pressure_min, max(pressure) AS pressure_max,
       count(vibration) AS vibration_n, coalesce(sum(vibration::float8), 0) AS vibration_sum,
       min(vibration) AS vibration_min, max(vibration) AS vibration_max,
       count(flow) AS flow_n, coalesce(sum(flow::float8), 0) AS flow_sum, min(flow) AS flow_min, max(flow) AS flow_max,
       count(level) AS level_n, coalesce(sum(level::float8), 0) AS level_sum, min(level) AS level_min, max(level) AS level_max,
       count(battery) AS battery_n, coalesce(sum(battery::float8), 0) AS battery_sum,
       min(battery) AS battery_min, max(battery) AS battery_max,
       count(lat) AS pos_n,
       max(ts) FILTER (WHERE lat IS NOT NULL) AS pos_ts,
       last(seq, ts) FILTER (WHERE lat IS NOT NULL) AS pos_seq,
       last(lat, ts) FILTER (WHERE lat IS NOT NULL) AS lat,
       last(lon, ts) FILTER (WHERE lat IS NOT NULL) AS lon
FROM telemetry
GROUP BY device_id, time_bucket(interval '1 minute', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW telemetry_1h WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT device_id,
       time_bucket(interval '1 hour', ts) AS ts,
       sum(samples) AS samples,
       sum(fuel_n) AS fuel_n, sum(fuel_sum) AS fuel_sum, min(fuel_min) AS fuel_min, max(fuel_max) AS fuel_max,
       sum(engine_temp_n) AS engine_temp_n, sum(engine_temp_sum) AS engine_temp_sum,
       min(engine_temp_min) AS engine_temp_min, max(engine_temp_max) AS engine_temp_max,
       sum(odometer_n) AS odometer_n, sum(odometer_sum) AS odometer_sum,
       min(odometer_min) AS odometer_min, max(odometer_max) AS odometer_max,
       sum(temperature_n) AS temperature_n, sum(temperature_sum) AS temperature_sum,
       min(temperature_min) AS temperature_min, max(temperature_max) AS temperature_max,
       sum(pressure_n) AS pressure_n, sum(pressure_sum) AS pressure_sum,
       min(pressure_min) AS pressure_min, max(pressure_max) AS pressure_max,
       sum(vibration_n) AS vibration_n, sum(vibration_sum) AS vibration_sum,
       min(vibration_min) AS vibration_min, max(vibration_max) AS vibration_max,
       sum(flow_n) AS flow_n, sum(flow_sum) AS flow_sum, min(flow_min) AS flow_min, max(flow_max) AS flow_max,
       sum(level_n) AS level_n, sum(level_sum) AS level_sum, min(level_min) AS level_min, max(level_max) AS level_max,
       sum(battery_n) AS battery_n, sum(battery_sum) AS battery_sum,
       min(battery_min) AS battery_min, max(battery_max) AS battery_max,
       sum(pos_n) AS pos_n,
       max(pos_ts) AS pos_ts,
       last(pos_seq, pos_ts) FILTER (WHERE pos_ts IS NOT NULL) AS pos_seq,
       last(lat, pos_ts) FILTER (WHERE pos_ts IS NOT NULL) AS lat,
       last(lon, pos_ts) FILTER (WHERE pos_ts IS NOT NULL) AS lon
FROM telemetry_1m
GROUP BY device_id, time_bucket(interval '1 hour', ts)
WITH NO DATA;

-- start_offset NULL: a late sample of any age (within retention) gets its bucket refreshed.
SELECT add_continuous_aggregate_policy('telemetry_1m', start_offset => NULL, end_offset => interval '1 minute',
                                       schedule_interval => interval '1 minute');
SELECT add_continuous_aggregate_policy('telemetry_1h', start_offset => NULL, end_offset => interval '1 hour',
                                       schedule_interval => interval '10 minutes');
