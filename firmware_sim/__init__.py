"""The simulated device fleet: trucks that drive generated routes and publish telemetry over MQTT.

The pieces, from the inside out:

* `route` — endless, street-like routes around a city centre and a vehicle's motion along one.
* `truck` — the pure device model: `Truck.step(now, dt_s)` returns the next `models.telemetry.Sample`.
* `store` — a device's samples until the bridge confirms them on `persisted`, bounded, on disk (one
  SQLite file per device) or in memory, with the device's boot and next seq.
* `forward` — store-and-forward: what to publish next (live, backlog in batches) and what to resend
  because `persisted` did not confirm it in time; who owns which stretch of a sample's way.
* `outbox`, `ledger` — what a device has handed to paho and the broker has not yet acknowledged, and
  the (boot, seq) pairs the broker acknowledged or the bridge persisted.
* `device` — one device's MQTT connection (paho-mqtt, threaded like a device SDK): presence with a
  Last Will, QoS 1 telemetry from its store, resends of what is unconfirmed, and the bridge's replies.
* `fleet` — N devices stepped on a drift-free schedule (or as fast as the broker acknowledges).
* `replay` — a recorded trip played back through one device.
* `address` — broker URLs (`mqtt://user:pass@host:port`, `mqtts://…`) parsed into a value object.
* `cli` — `python -m firmware_sim` and `fleet sim` (`firmware_sim.cli.main(argv)`).
* `errors` — `SimError`, the root of what the package raises on purpose.
"""
