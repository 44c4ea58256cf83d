"""The rules engine: reads the bridge's committed feed, evaluates each device's samples in device-time
order against the alert rules, and keeps alerts in PostgreSQL (docs/rules.md)."""
