"""Telemetry history of one device from PostgreSQL: raw pages keyset-paginated on (ts, seq), time buckets
(from the raw rows or the rollups), LTTB-downsampled series, seq gaps, and track exports."""
