"""The engine's durable feed (`engine_feed`, migration 0013): what the bridge writes and the engine consumes.

Both sides name the same table and the same partitioning, so the partition count lives here, beside the
SQL that writes the feed from the bridge's staging table.
"""

from __future__ import annotations

from typing import Final

FEED_PARTITIONS: Final = 16  # `engine_feed.part` is `hashtextextended(device_id, 0) & 15`

# One statement per batch, in the batch's transaction, from the staging table the batch was copied into:
# at most one row per partition, with each device of the batch and the earliest sample time it wrote.
# (One row per device cost about twice as much on 1,000-device batches: docs/rules.md.) Redelivered
# samples are listed too; the engine re-reads their window and finds nothing new.
FEED_FROM_STAGE: Final = (
    "INSERT INTO engine_feed (part, devices, ts_from) SELECT part, array_agg(device_id), array_agg(first)"
    " FROM (SELECT device_id, min(ts) AS first, (hashtextextended(device_id, 0) & 15)::smallint AS part"
    " FROM telemetry_stage GROUP BY device_id) AS batch GROUP BY part"
)
