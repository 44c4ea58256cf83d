"""The fleetbridge HTTP and WebSocket API: a `create_app(settings)` factory plus one folder per domain.

It reads last-known state and live updates from Redis and history and the device registry from
PostgreSQL; it never imports the bridge (they meet only in MQTT, Redis and PostgreSQL via `models`).
"""
