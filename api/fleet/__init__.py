"""Fleet state: the last-known state of many devices at once, from Redis, chosen through the registry."""
