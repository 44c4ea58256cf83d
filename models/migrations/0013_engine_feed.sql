-- The engine's durable feed: one row per device per bridge batch, written in the batch's own transaction
-- (bridge/feed.py), naming the device-time range of the samples the batch wrote for that device. A row is
-- visible exactly when its samples are, so the engine never reads uncommitted data and never misses a
-- commit. The engine consumes rows by deleting them in the transaction that stores what it derived from
-- them (engine/store.py): there is no "last id read" checkpoint that a late-committing lower id could slip
-- under (docs/rules.md, "The feed"). `part` splits the fleet into hash partitions, one engine instance each.
CREATE TABLE engine_feed (
    id        bigserial PRIMARY KEY,
    device_id text NOT NULL,
    ts_from   timestamptz NOT NULL,
    ts_to     timestamptz NOT NULL,
    -- 16 partitions; models/feed.py FEED_PARTITIONS says the same number.
    part      smallint NOT NULL GENERATED ALWAYS AS ((hashtextextended(device_id, 0) & 15)::smallint) STORED,
    written_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX engine_feed_part_idx ON engine_feed (part, id);
