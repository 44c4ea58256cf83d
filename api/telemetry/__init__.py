"""Telemetry history of one device from PostgreSQL: raw pages keyset-paginated on (ts, boot, seq), time buckets
(from the raw rows or the rollups), LTTB-downsampled series, seq gaps, and track exports."""
