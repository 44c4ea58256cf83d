-- Device registry and dead letters: ordinary tables on every database.
CREATE TABLE devices (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    kind        text NOT NULL DEFAULT 'truck',
    name        text,
    group_name  text,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz,
    disabled    boolean NOT NULL DEFAULT false
);
CREATE INDEX devices_group_idx ON devices (group_name) WHERE group_name IS NOT NULL;

-- Every refused message or sample, kept for inspection. A redelivered refusal inserts nothing twice:
-- the key is the topic, the payload's digest and the sample's index inside it (-1: the whole message).
CREATE TABLE rejected_messages (
    id              bigserial PRIMARY KEY,
    received_at     timestamptz NOT NULL,
    topic           text NOT NULL,
    device_id       text,
    reason          text NOT NULL,
    sample_index    integer NOT NULL DEFAULT -1,
    seq             bigint,
    payload_sha256  bytea NOT NULL,
    payload         bytea NOT NULL,
    payload_size    integer NOT NULL,
    UNIQUE (topic, payload_sha256, sample_index)
);
CREATE INDEX rejected_messages_device_idx ON rejected_messages (device_id, received_at DESC);
