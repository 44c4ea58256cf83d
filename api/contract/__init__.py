"""The MQTT contract: the AsyncAPI document of every topic, generated from the payload types."""
