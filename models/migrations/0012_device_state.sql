-- Each device's newest value of every state field (position, each metric, each aggregate, quality),
-- with the (ts, boot, seq) of the sample that set it: what Redis holds, kept durably beside the history.
-- Rebuilding Redis after it lost its data reads this table, whose size is devices x fields, instead of
-- scanning every device's history. `field` is the state field's name in Redis (`pos`, `m.<metric>`,
-- `a.<metric>`, `quality`); `value` the value as the live state encodes it (a position object, a number,
-- an aggregate object {min, max, avg, count[, std]}). The bridge upserts it from committed batches,
-- newer (ts, boot, seq) wins, once a second (bridge/statestore.py). Filled here once from the history
-- already stored.
CREATE TABLE device_state (
    ts         timestamptz NOT NULL,
    seq        bigint NOT NULL,
    boot       integer NOT NULL,
    device_id  text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    field      text NOT NULL,
    value      jsonb NOT NULL,
    PRIMARY KEY (device_id, field)
);

-- Per registered device and field, its newest row that has the field: LATERAL with LIMIT 1 walks the
-- device's key index from the newest end and stops at the first such row (a field the device never
-- sends costs a walk through its whole history, once, here).
INSERT INTO device_state (device_id, field, ts, boot, seq, value)
SELECT d.id, 'pos', t.ts, t.boot, t.seq, jsonb_strip_nulls(jsonb_build_object(
           'lat', t.lat, 'lon', t.lon, 'alt', t.alt, 'speed', t.speed, 'heading', t.heading, 'accuracy', t.accuracy))
FROM devices AS d CROSS JOIN LATERAL (
    SELECT ts, boot, seq, lat, lon, alt, speed, heading, accuracy FROM telemetry
    WHERE device_id = d.id AND lat IS NOT NULL ORDER BY ts DESC, boot DESC, seq DESC LIMIT 1) AS t;

DO $$
DECLARE
    col text;
BEGIN
    FOREACH col IN ARRAY ARRAY['fuel', 'engine_temp', 'odometer', 'temperature', 'pressure', 'vibration', 'flow',
                               'level', 'battery', 'quality'] LOOP
        EXECUTE format(
            'INSERT INTO device_state (device_id, field, ts, boot, seq, value)'
            ' SELECT d.id, %L, t.ts, t.boot, t.seq, to_jsonb(t.v) FROM devices AS d CROSS JOIN LATERAL ('
            ' SELECT ts, boot, seq, %I AS v FROM telemetry WHERE device_id = d.id AND %I IS NOT NULL'
            ' ORDER BY ts DESC, boot DESC, seq DESC LIMIT 1) AS t',
            CASE WHEN col = 'quality' THEN col ELSE 'm.' || col END, col, col);
    END LOOP;
END
$$;

-- Metrics without a column, and the devices' aggregates ([min, max, avg, count] and std fifth if sent).
INSERT INTO device_state (device_id, field, ts, boot, seq, value)
SELECT DISTINCT ON (t.device_id, e.key) t.device_id, 'm.' || e.key, t.ts, t.boot, t.seq, e.value
FROM telemetry AS t CROSS JOIN LATERAL jsonb_each(t.extra) AS e
WHERE t.extra IS NOT NULL AND t.device_id IN (SELECT id FROM devices)
ORDER BY t.device_id, e.key, t.ts DESC, t.boot DESC, t.seq DESC
ON CONFLICT (device_id, field) DO NOTHING;

INSERT INTO device_state (device_id, field, ts, boot, seq, value)
SELECT DISTINCT ON (t.device_id, e.key) t.device_id, 'a.' || e.key, t.ts, t.boot, t.seq,
       jsonb_strip_nulls(jsonb_build_object(
           'min', e.value -> 0, 'max', e.value -> 1, 'avg', e.value -> 2, 'count', e.value -> 3, 'std', e.value -> 4))
FROM telemetry AS t CROSS JOIN LATERAL jsonb_each(t.agg) AS e
WHERE t.agg IS NOT NULL AND t.device_id IN (SELECT id FROM devices)
ORDER BY t.device_id, e.key, t.ts DESC, t.boot DESC, t.seq DESC
ON CONFLICT (device_id, field) DO NOTHING;
