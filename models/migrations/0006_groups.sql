-- Device groups as operators describe them (PUT /api/v1/groups/{name}). Membership stays
-- `devices.group_name`, without a foreign key: the bridge, `fleet devices add --group` and API keys name
-- groups freely, and a group exists as soon as a device names it. A row here adds a description and
-- makes a group exist before its first device (and after its last one, until it is deleted).
CREATE TABLE device_groups (
    -- The grammar of group names the API accepts: safe in URLs, logs and the broker's files.
    name         text PRIMARY KEY CONSTRAINT device_groups_name_grammar CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$'),
    description  text CONSTRAINT device_groups_description_length CHECK (char_length(description) <= 1000),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
