-- A sample is identified by (device_id, boot, seq) in every layer: the bridge's `persisted` replies, the
-- state merge, history cursors. The key was (device_id, ts, seq), so a sample of a new boot with the
-- ts and seq of one of the previous boot was discarded by ON CONFLICT while reported persisted. The key
-- keeps `ts` because the tables are partitioned by it (a unique key must hold the partition key), and
-- keeps it first after the device: every reader walks one device's rows in time order, and the key's
-- index, (device_id, ts, boot, seq), serves those reads and the (ts, boot, seq) keyset order of history
-- pages with no second index. Existing rows already satisfy the new, looser key: only the index is
-- rebuilt (a pass over the history, under the migration's lock).
ALTER TABLE telemetry DROP CONSTRAINT telemetry_pkey, ADD PRIMARY KEY (device_id, ts, boot, seq);
ALTER TABLE events DROP CONSTRAINT events_pkey, ADD PRIMARY KEY (device_id, ts, boot, seq);

-- The last fix of a rollup bucket is chosen by (ts, boot, seq): two fixes of one instant from two boots
-- are two samples. The boot of the fixes already rolled up is looked up in the history.
ALTER TABLE telemetry_1m ADD COLUMN pos_boot integer;
ALTER TABLE telemetry_1h ADD COLUMN pos_boot integer;
UPDATE telemetry_1m AS r SET pos_boot = t.boot FROM telemetry AS t
WHERE r.pos_ts IS NOT NULL AND t.device_id = r.device_id AND t.ts = r.pos_ts AND t.seq = r.pos_seq;
UPDATE telemetry_1h AS r SET pos_boot = t.boot FROM telemetry AS t
WHERE r.pos_ts IS NOT NULL AND t.device_id = r.device_id AND t.ts = r.pos_ts AND t.seq = r.pos_seq;
UPDATE telemetry_1m SET pos_boot = 0 WHERE pos_ts IS NOT NULL AND pos_boot IS NULL;
UPDATE telemetry_1h SET pos_boot = 0 WHERE pos_ts IS NOT NULL AND pos_boot IS NULL;
