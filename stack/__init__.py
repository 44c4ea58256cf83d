"""Real servers as child processes, for the integration tests and the local stack.

`stack.process` holds what every server shares (free ports, readiness, stop, SIGKILL, restart);
`stack.redis` and `stack.postgres` start those servers. Mosquitto's launcher lives with the rest of
the broker in `broker.process`.
"""
