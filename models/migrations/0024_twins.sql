-- Device twins (docs/twin.md): each device's desired configuration, its group's defaults, and what the
-- device reports applying. A device receives its group's defaults with its own keys merged over them.
--
-- One version per device covers that whole effective document: it is taken from one sequence for every
-- twin whenever the device's own keys, its group's defaults or its group change (the triggers below), so
-- it only ever grows for a device, even across a delete and re-creation of its id, and a device may apply
-- a document only when its version is higher than the one it applied last. The REST ETag is this version.
CREATE SEQUENCE twin_versions AS bigint;

-- Defaults of a device group. No foreign key: a group exists as soon as a device names it (0006).
CREATE TABLE group_twins (
    group_name  text PRIMARY KEY,
    desired     jsonb NOT NULL DEFAULT '{}'::jsonb CONSTRAINT group_twins_desired_object CHECK (jsonb_typeof(desired) = 'object'),
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text
);

CREATE TABLE device_twins (
    device_id          text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    -- The device's own keys (its group's defaults apply under them).
    desired            jsonb NOT NULL DEFAULT '{}'::jsonb CONSTRAINT device_twins_desired_object CHECK (jsonb_typeof(desired) = 'object'),
    -- The effective document's version; 0: nothing was ever desired.
    version            bigint NOT NULL DEFAULT 0,
    updated_at         timestamptz,
    updated_by         text,
    -- The version last published (retained) on fleet/v1/{id}/config; behind `version` until the broker has it.
    published_version  bigint NOT NULL DEFAULT 0,
    published_at       timestamptz,
    -- The device's own report (fleet/v1/{id}/config/reported); only a higher version replaces it.
    reported           jsonb,
    reported_version   bigint,
    reported_at        timestamptz
);
-- What every API instance sweeps for: documents the broker does not have yet.
CREATE INDEX device_twins_unpublished ON device_twins (device_id) WHERE published_version < version;

-- A group's defaults changed: every member's effective document did. Members in id order, the order in
-- which the delivery sweep locks them (api/twin/delivery.py).
CREATE FUNCTION group_twins_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_twins (device_id, version)
        SELECT id, nextval('twin_versions') FROM (SELECT id FROM devices WHERE group_name = NEW.group_name ORDER BY id) AS members
        ON CONFLICT (device_id) DO UPDATE SET version = EXCLUDED.version;
    RETURN NULL;
END $$;
CREATE TRIGGER group_twins_added AFTER INSERT ON group_twins
    FOR EACH ROW WHEN (NEW.desired <> '{}'::jsonb) EXECUTE FUNCTION group_twins_changed();
CREATE TRIGGER group_twins_changed AFTER UPDATE OF desired ON group_twins
    FOR EACH ROW WHEN (OLD.desired IS DISTINCT FROM NEW.desired) EXECUTE FUNCTION group_twins_changed();

-- A device joined, left or changed group (or was added to one with defaults): its effective document
-- changed when either group has defaults, or when it has a twin of its own.
CREATE FUNCTION device_group_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM group_twins WHERE group_name = NEW.group_name)
       OR (TG_OP = 'UPDATE' AND EXISTS (SELECT 1 FROM group_twins WHERE group_name = OLD.group_name))
       OR EXISTS (SELECT 1 FROM device_twins WHERE device_id = NEW.id) THEN
        INSERT INTO device_twins (device_id, version) VALUES (NEW.id, nextval('twin_versions'))
            ON CONFLICT (device_id) DO UPDATE SET version = EXCLUDED.version;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER devices_twin_group_changed AFTER UPDATE OF group_name ON devices
    FOR EACH ROW WHEN (OLD.group_name IS DISTINCT FROM NEW.group_name) EXECUTE FUNCTION device_group_changed();
CREATE TRIGGER devices_twin_added AFTER INSERT ON devices
    FOR EACH ROW WHEN (NEW.group_name IS NOT NULL) EXECUTE FUNCTION device_group_changed();

-- A deleted device whose document reached the broker leaves it retained there: the delivery sweep clears
-- it (an empty retained message), so an id used again never receives its former life's document.
CREATE TABLE twin_clears (
    device_id   text PRIMARY KEY,
    deleted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION device_twin_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.published_version > 0 THEN
        INSERT INTO twin_clears (device_id) VALUES (OLD.device_id) ON CONFLICT (device_id) DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER device_twins_deleted AFTER DELETE ON device_twins
    FOR EACH ROW EXECUTE FUNCTION device_twin_deleted();
