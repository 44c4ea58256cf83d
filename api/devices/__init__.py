"""The device registry (PostgreSQL), devices' broker accounts, and each device's last-known state (Redis)."""
