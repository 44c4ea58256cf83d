-- Maintenance schedules and the log that restarts them (docs/maintenance.md). Each schedule has an
-- alert rule of its own (op 'maintenance'): its alerts are the rules engine's alerts, with the same
-- lifecycle, live messages, MQTT notices and notifications; the engine's threshold stages leave these
-- rules alone (engine/maintenance.py raises and clears them).
ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_op_check;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_op_check
    CHECK (op IN ('>', '<', 'outside', 'offline', 'entered', 'inside', 'left', 'drop', 'maintenance'));

CREATE TABLE maintenance_schedules (
    id          bigserial PRIMARY KEY,
    rule_id     bigint NOT NULL UNIQUE REFERENCES alert_rules (id),
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    basis       text NOT NULL CHECK (basis IN ('odometer', 'calendar')),
    every       double precision NOT NULL CHECK (every > 0),  -- km (odometer) or days (calendar)
    device_id   text,
    kind        text,
    group_name  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    deleted_at  timestamptz,
    CHECK (num_nonnulls(device_id, kind, group_name) <= 1)
);

-- Who did what, when; the newest entry of a schedule and device is where its next interval counts from.
CREATE TABLE maintenance_log (
    id           bigserial PRIMARY KEY,
    schedule_id  bigint NOT NULL REFERENCES maintenance_schedules (id),
    device_id    text NOT NULL,
    done_at      timestamptz NOT NULL DEFAULT now(),
    done_by      text NOT NULL,
    notes        text CHECK (char_length(notes) <= 2000),
    odometer     double precision  -- km on the device's odometer when done (its latest reading if not given)
);
CREATE INDEX maintenance_log_idx ON maintenance_log (schedule_id, device_id, done_at DESC);
