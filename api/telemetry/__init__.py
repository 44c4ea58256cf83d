"""Raw telemetry history of one device from PostgreSQL, keyset-paginated on (ts, seq)."""
