"""A device's discrete events (ignition, harsh braking, door …) as the bridge stored them, newest first."""
