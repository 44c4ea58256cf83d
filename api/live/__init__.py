"""Live state over a WebSocket, fanned out from the Redis stream every API instance reads.

One `LiveStreamReader` per app instance reads `fleet:live` and hands each update to the `LiveHub`,
which offers it to the `Outbox` of every connection subscribed to that device. An outbox keeps at
most one pending update per device, merging newer changes into it, so a slow client costs bounded
memory and receives the newest state instead of a growing backlog.
"""
