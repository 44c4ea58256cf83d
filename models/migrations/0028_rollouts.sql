-- Firmware rollouts to a device group in waves (docs/ota.md#rollouts): a first wave of a percentage of
-- the group, then the rest, unless the first wave's failures pass the threshold.
CREATE TABLE rollouts (
    id                     bigserial PRIMARY KEY,
    image_id               bigint NOT NULL REFERENCES firmware_images (id),
    group_name             text NOT NULL,
    first_wave_pct         integer NOT NULL CHECK (first_wave_pct BETWEEN 1 AND 100),
    failure_threshold_pct  integer NOT NULL CHECK (failure_threshold_pct BETWEEN 0 AND 100),
    expires_in_s           integer NOT NULL CHECK (expires_in_s > 0),
    link_base              text NOT NULL,  -- the API's address as devices reach it, for download links
    state                  text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'stopped', 'completed')),
    wave                   integer NOT NULL DEFAULT 1 CHECK (wave IN (1, 2)),
    reason                 text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    created_by             text NOT NULL,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    finished_at            timestamptz
);
CREATE INDEX rollouts_running_idx ON rollouts (id) WHERE state = 'running';

CREATE TABLE rollout_devices (
    rollout_id  bigint NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    wave        integer NOT NULL CHECK (wave IN (1, 2)),
    command_id  uuid REFERENCES commands (id) ON DELETE SET NULL,
    PRIMARY KEY (rollout_id, device_id)
);
