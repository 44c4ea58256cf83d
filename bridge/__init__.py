"""The bridge: MQTT telemetry in, last-known state to Redis, history to PostgreSQL.

A pipeline of small stages wired in `bridge.app`: `source` (the MQTT adapter) -> `decode` -> `batch`
-> `sink` (COPY + COMMIT) -> acknowledgement, then `cache` (Redis state and live stream) and `fanout`
(persisted / rejected replies). Each MQTT message is acknowledged only after the COMMIT that holds it.
"""
