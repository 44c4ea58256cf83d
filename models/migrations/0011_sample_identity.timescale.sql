-- TimescaleDB: the same key change as the plain variant (see 0011_sample_identity.sql for why), on the
-- hypertables. The key of a hypertable with compression cannot change: compression is switched off
-- first (compressed chunks decompressed), and timescale_features.sql, which runs right after the
-- history, switches it on again ordered by the new key. The rollups are continuous aggregates there,
-- maintained by TimescaleDB (last fix by ts alone): they get no `pos_boot`.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM timescaledb_information.hypertables
        WHERE hypertable_name = 'telemetry' AND compression_enabled
    ) THEN
        PERFORM remove_compression_policy('telemetry', if_exists => true);
        PERFORM decompress_chunk(c, if_compressed => true) FROM show_chunks('telemetry') AS c;
        ALTER TABLE telemetry SET (timescaledb.compress = false);
    END IF;
END
$$;
ALTER TABLE telemetry DROP CONSTRAINT telemetry_pkey;
ALTER TABLE telemetry ADD PRIMARY KEY (device_id, ts, boot, seq);
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD PRIMARY KEY (device_id, ts, boot, seq);
