-- Idempotent TimescaleDB features, applied after the migrations only where the extension exists.
-- %(retention_days)s is filled in from settings.
ALTER TABLE telemetry SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                           timescaledb.compress_orderby = 'ts, seq');
SELECT add_compression_policy('telemetry', interval '2 days', if_not_exists => true);
SELECT add_retention_policy('telemetry', make_interval(days => %(retention_days)s), if_not_exists => true);
SELECT add_retention_policy('events', make_interval(days => %(retention_days)s), if_not_exists => true);
