"""The rules engine, a process of its own: reads the bridge's committed feed, evaluates each device's samples
in device-time order against the alert rules, and keeps alerts in PostgreSQL; geofence and trip computation
as pure functions beside it (docs/rules.md)."""
