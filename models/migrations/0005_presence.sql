-- Presence in the registry: online or offline, since when (server time), and what decided it
-- ('status': the device's retained status or Last Will; 'heartbeat': silence past the timeout).
ALTER TABLE devices
    ADD COLUMN presence text CHECK (presence IN ('online', 'offline')),
    ADD COLUMN presence_source text CHECK (presence_source IN ('status', 'heartbeat')),
    ADD COLUMN presence_since timestamptz;
