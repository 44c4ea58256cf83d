"""Live state over a WebSocket (and by polling), fanned out from the Redis stream every API instance reads.

One `LiveStreamReader` per app instance reads `fleet:live` and hands each update to the `LiveHub`,
which offers it to the `Outbox` of every connection whose `Selection` (devices, groups, boxes of the
map) matches, within the connection's group limit. An outbox keeps at most one pending update per
device and kind, merging newer changes into it, so a slow client costs bounded memory and receives
the newest state instead of a growing backlog. Every update carries its stream entry id as a cursor:
a client that comes back with it is replayed what it missed from the stream's bounded history
(`history`), or told to start again from snapshots when that history no longer reaches back so far.
"""
