-- Refused messages are listed per device and fleet-wide, newest first (GET /api/v1/devices/{id}/rejected,
-- GET /api/v1/rejected), keyset-paginated on id: the fleet-wide listing walks the primary key, the
-- per-device one this index. And the boot of a refused sample, where it could be read.
ALTER TABLE rejected_messages ADD COLUMN boot integer;
CREATE INDEX rejected_messages_device_id_idx ON rejected_messages (device_id, id DESC);
