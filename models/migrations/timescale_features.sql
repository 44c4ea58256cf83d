-- Idempotent TimescaleDB features, applied after the migrations only where the extension exists.
-- %(retention_days)s is filled in from settings; re-running with another value replaces the policy.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM timescaledb_information.hypertables
        WHERE hypertable_name = 'telemetry' AND compression_enabled
    ) THEN
        ALTER TABLE telemetry SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                                   timescaledb.compress_orderby = 'ts, boot, seq');
    END IF;
END
$$;
SELECT add_compression_policy('telemetry', interval '2 days', if_not_exists => true);
SELECT remove_retention_policy('telemetry', if_exists => true);
SELECT add_retention_policy('telemetry', make_interval(days => %(retention_days)s));
SELECT remove_retention_policy('events', if_exists => true);
SELECT add_retention_policy('events', make_interval(days => %(retention_days)s));
-- The rollups (continuous aggregates of step 0007) are kept as long as the raw rows they summarise.
SELECT remove_retention_policy('telemetry_1m', if_exists => true);
SELECT add_retention_policy('telemetry_1m', make_interval(days => %(retention_days)s));
SELECT remove_retention_policy('telemetry_1h', if_exists => true);
SELECT add_retention_policy('telemetry_1h', make_interval(days => %(retention_days)s));
