-- Alert rules, alerts and the engine's evaluation state (docs/rules.md). models/rules.py validates rules
-- before they get here; the CHECKs keep a hand-written row from breaking the engine.
CREATE TABLE alert_rules (
    id               bigserial PRIMARY KEY,
    name             text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    metric           text,  -- none for 'offline' (a presence rule)
    op               text NOT NULL CHECK (op IN ('>', '<', 'outside', 'offline')),
    threshold        double precision,
    low              double precision,
    high             double precision,
    for_s            integer NOT NULL DEFAULT 0 CHECK (for_s BETWEEN 0 AND 86400),
    clear_threshold  double precision,
    clear_for_s      integer NOT NULL DEFAULT 0 CHECK (clear_for_s BETWEEN 0 AND 86400),
    severity         text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    device_id        text,
    kind             text,
    group_name       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text,
    -- Removed rules stay, so that their alerts keep naming them; the engine ignores them.
    deleted_at       timestamptz,
    CHECK (CASE op
        WHEN 'outside' THEN metric IS NOT NULL AND threshold IS NULL AND low IS NOT NULL AND high IS NOT NULL
        WHEN 'offline' THEN metric IS NULL AND threshold IS NULL AND low IS NULL AND high IS NULL AND for_s > 0
        ELSE metric IS NOT NULL AND threshold IS NOT NULL AND low IS NULL AND high IS NULL END)
);

-- One row per episode: the natural key (rule, device, started_at) makes a re-evaluation write nothing
-- twice, and at most one alert per (rule, device) is open at a time.
CREATE TABLE alerts (
    id               bigserial PRIMARY KEY,
    rule_id          bigint NOT NULL REFERENCES alert_rules (id),
    device_id        text NOT NULL,
    started_at       timestamptz NOT NULL,  -- device time the condition began
    raised_at        timestamptz NOT NULL,  -- device time it had held for the rule's duration
    severity         text NOT NULL,
    state            text NOT NULL CHECK (state IN ('active', 'acknowledged', 'cleared', 'retracted')),
    value            double precision,      -- the reading that raised it
    message          text NOT NULL,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    cleared_at       timestamptz,           -- device time when cleared by its condition, else server time
    clear_reason     text CHECK (clear_reason IN ('condition', 'operator', 'rule_removed')),
    cleared_by       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rule_id, device_id, started_at)
);
CREATE UNIQUE INDEX alerts_one_open_idx ON alerts (rule_id, device_id) WHERE state IN ('active', 'acknowledged');
CREATE INDEX alerts_device_idx ON alerts (device_id, started_at DESC);
CREATE INDEX alerts_open_idx ON alerts (started_at DESC) WHERE state IN ('active', 'acknowledged');

CREATE TABLE alert_comments (
    id         bigserial PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES alerts (id),
    author     text NOT NULL,
    body       text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 2000),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_comments_alert_idx ON alert_comments (alert_id, id);

-- Every change of an alert, in the transaction that made it (engine or API): what integrators (MQTT) and
-- live operators (WebSocket) are told, in order. `xid` lets a reader take only rows whose transactions
-- can no longer commit out of order (below the snapshot's xmin).
CREATE TABLE alert_events (
    id         bigserial PRIMARY KEY,
    xid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    alert_id   bigint NOT NULL REFERENCES alerts (id),
    kind       text NOT NULL,  -- raised, acknowledged, cleared, commented, retracted, reopened
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_events_xid_idx ON alert_events (xid, id);
CREATE TABLE alert_event_cursor (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    xid        xid8 NOT NULL,
    id         bigint NOT NULL
);
INSERT INTO alert_event_cursor (xid, id) VALUES ('0'::xid8, 0);

-- The engine's evaluation state. Per device: the last sample evaluated (device-time order). Per rule and
-- device: the state after each transition, keyed by the sample that caused it, so that a late sample
-- restarts from the state just before it (engine/store.py).
CREATE TABLE engine_heads (
    device_id  text PRIMARY KEY,
    ts         timestamptz NOT NULL,
    boot       integer NOT NULL,
    seq        bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE engine_transitions (
    rule_id     bigint NOT NULL,
    device_id   text NOT NULL,
    ts          timestamptz NOT NULL,
    boot        integer NOT NULL,
    seq         bigint NOT NULL,
    phase       text NOT NULL CHECK (phase IN ('idle', 'pending', 'active', 'clearing')),
    since       timestamptz,
    clear_since timestamptz,
    PRIMARY KEY (rule_id, device_id, ts, boot, seq)
);
-- Engine instances alive (heartbeat): each takes its share of the feed's partitions.
CREATE TABLE engine_instances (
    name     text PRIMARY KEY,
    seen_at  timestamptz NOT NULL,
    parts    smallint[] NOT NULL DEFAULT '{}'
);
