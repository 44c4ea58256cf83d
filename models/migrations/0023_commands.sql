-- Commands to devices and every transition of their lifecycle (docs/commands.md). models/commands.py
-- checks a command before it gets here; the CHECKs keep a hand-written row from breaking the lifecycle.
CREATE TABLE commands (
    id               uuid PRIMARY KEY,
    device_id        text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    name             text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64),
    args             jsonb NOT NULL DEFAULT '{}'::jsonb,
    dangerous        boolean NOT NULL DEFAULT false,
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'sent', 'received', 'succeeded', 'failed', 'expired', 'cancelled')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text NOT NULL,
    expires_at       timestamptz NOT NULL,
    -- The same key from the same caller for the same device returns this command instead of a new one;
    -- the request's digest tells a replay from a different request reusing the key.
    idempotency_key  text CHECK (char_length(idempotency_key) BETWEEN 1 AND 200),
    request_sha256   bytea,
    sent_at          timestamptz,
    -- How often the command was handed to the broker: again when its device reconnected before answering.
    attempts         integer NOT NULL DEFAULT 0,
    received_at      timestamptz,
    finished_at      timestamptz,
    result           jsonb,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (expires_at > created_at),
    UNIQUE (device_id, created_by, idempotency_key)
);
CREATE INDEX commands_device_idx ON commands (device_id, created_at DESC, id);
-- What the dispatcher and the expiry sweep look at: few rows, the open ones.
CREATE INDEX commands_open_idx ON commands (expires_at) WHERE state IN ('queued', 'sent', 'received');

-- One row per transition, written in the transaction that made it (API, dispatcher, bridge): the command's
-- history, and what live connections are told, in commit order (`xid`, as `alert_events`). A state is
-- reached once: a redelivered acknowledgement writes nothing twice. `progress` (a firmware update's
-- download, verification, installation) is the one state recorded as often as the device reports it.
CREATE TABLE command_events (
    id          bigserial PRIMARY KEY,
    xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    command_id  uuid NOT NULL REFERENCES commands (id) ON DELETE CASCADE,
    state       text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    device_ts   timestamptz,  -- the device's own time of an acknowledgement
    detail      jsonb
);
CREATE UNIQUE INDEX command_events_once_idx ON command_events (command_id, state) WHERE state <> 'progress';
CREATE INDEX command_events_xid_idx ON command_events (xid, id);
