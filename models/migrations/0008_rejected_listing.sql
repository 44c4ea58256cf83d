-- Refused messages are listed per device and fleet-wide, newest first (GET /api/v1/devices/{id}/rejected,
-- GET /api/v1/rejected): the boot of a refused sample where it could be read, and an index for the
-- fleet-wide listing (the per-device one has rejected_messages_device_idx).
ALTER TABLE rejected_messages ADD COLUMN boot integer;
CREATE INDEX rejected_messages_received_idx ON rejected_messages (received_at DESC, id DESC);
