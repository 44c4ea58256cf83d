"""The device twin: desired configuration per device and group, its delivery over MQTT, and the devices' reports."""
