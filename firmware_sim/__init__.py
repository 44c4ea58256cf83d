"""The simulated device fleet: trucks that drive generated routes and publish telemetry over MQTT.

The pieces, from the inside out:

* `route` — endless, street-like routes around a city centre and a vehicle's motion along one.
* `truck` — the pure device model: `Truck.step(now, dt_s)` returns the next `models.telemetry.Sample`.
* `outbox`, `ledger` — what a device has sent but the broker has not yet acknowledged, and the
  (boot, seq) pairs that it has.
* `device` — one device's MQTT connection (paho-mqtt, threaded like a device SDK): presence with a
  Last Will, QoS 1 telemetry, an outbox that survives reconnects, and the bridge's replies.
* `fleet` — N devices stepped on a drift-free schedule (or as fast as the broker acknowledges).
* `replay` — a recorded trip played back through one device.
* `address` — broker URLs (`mqtt://user:pass@host:port`, `mqtts://…`) parsed into a value object.
* `cli` — `python -m firmware_sim` and `fleet sim` (`firmware_sim.cli.main(argv)`).
* `errors` — `SimError`, the root of what the package raises on purpose.
"""
