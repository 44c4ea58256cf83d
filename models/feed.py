"""The engine's durable feed (`engine_feed`, migration 0013): what the bridge writes and the engine consumes.

Both sides name the same table and the same partitioning, so the partition count lives here, beside the
SQL that writes the feed from the bridge's staging table.
"""

from __future__ import annotations

from typing import Final

FEED_PARTITIONS: Final = 16  # `engine_feed.part` is `hashtextextended(device_id, 0) & 15`

# One statement per batch, in the batch's transaction, from the staging table the batch was copied into:
# every device of the batch with the device-time range it wrote. Redelivered samples are listed too; the
# engine re-reads their window and finds nothing new.
FEED_FROM_STAGE: Final = (
    "INSERT INTO engine_feed (device_id, ts_from, ts_to)"
    " SELECT device_id, min(ts), max(ts) FROM telemetry_stage GROUP BY device_id"
)
