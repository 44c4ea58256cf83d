"""The rules engine: per-device evaluation of committed samples (geofences, trips, rules, alerts)."""
