-- The engine's durable feed: written in each bridge batch's own transaction (bridge/feed.py), one row per
-- feed partition the batch touched, listing the batch's devices of that partition and the earliest device
-- time it wrote for each. A row is visible exactly when its samples are, so the engine never reads
-- uncommitted data and never misses a commit. The engine consumes rows by deleting them in the
-- transaction that stores what it derived from them (engine/store.py): there is no "last id read"
-- checkpoint that a late-committing lower id could slip under (docs/rules.md, "The feed").
-- `part` (`hashtextextended(device_id, 0) & 15`, models/feed.py) splits the fleet between engine instances.
CREATE TABLE engine_feed (
    id         bigserial PRIMARY KEY,
    part       smallint NOT NULL CHECK (part BETWEEN 0 AND 15),
    devices    text[] NOT NULL,
    ts_from    timestamptz[] NOT NULL,  -- per device, the earliest sample time the batch wrote
    written_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX engine_feed_part_idx ON engine_feed (part, id);
