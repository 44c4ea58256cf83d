-- Notifications of alert changes (docs/rules.md, "Notifications"): channels an admin configures, which
-- rules notify which channels of which changes, and an outbox the engine fills from `alert_events` in one
-- transaction with its cursor, then delivers with retries. A dead-lettered notification stays visible.
CREATE TABLE notification_channels (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    kind        text NOT NULL CHECK (kind IN ('webhook', 'email')),
    url         text,          -- webhook: where to POST
    -- webhook: the HMAC-SHA256 key of the signature header. Kept as given, not hashed: the engine needs
    -- it to sign, as the receiver does to verify (docs/security.md).
    secret      text,
    recipients  text[],        -- email: the To addresses
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text,
    deleted_at  timestamptz,
    CHECK (CASE kind
        WHEN 'webhook' THEN url IS NOT NULL AND secret IS NOT NULL AND recipients IS NULL
        ELSE url IS NULL AND secret IS NULL AND cardinality(recipients) > 0 END)
);
CREATE UNIQUE INDEX notification_channels_name_idx ON notification_channels (name) WHERE deleted_at IS NULL;

-- Which alert changes of a rule go to a channel: one notification per change the rule asks for.
CREATE TABLE rule_notifications (
    rule_id     bigint NOT NULL REFERENCES alert_rules (id),
    channel_id  bigint NOT NULL REFERENCES notification_channels (id),
    events      text[] NOT NULL CHECK (cardinality(events) > 0),
    PRIMARY KEY (rule_id, channel_id)
);

-- The outbox. (channel, alert event) is the natural key: filling it again after a crash adds nothing.
CREATE TABLE notifications (
    id               bigserial PRIMARY KEY,
    channel_id       bigint NOT NULL REFERENCES notification_channels (id),
    alert_event_id   bigint NOT NULL REFERENCES alert_events (id),
    alert_id         bigint NOT NULL REFERENCES alerts (id),
    event            text NOT NULL,
    payload          jsonb NOT NULL,  -- the AlertNotice, as the alert was when the change was read
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    UNIQUE (channel_id, alert_event_id)
);
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notifications_state_idx ON notifications (state, id DESC);

CREATE TABLE notification_cursor (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    xid        xid8 NOT NULL,
    id         bigint NOT NULL
);
INSERT INTO notification_cursor (xid, id) VALUES ('0'::xid8, 0);
