"""The device registry (PostgreSQL) and each device's last-known state (Redis)."""
