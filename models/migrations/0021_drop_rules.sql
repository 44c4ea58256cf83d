-- Rate-of-change rules (op 'drop', docs/rules.md): the metric fell by more than `threshold` within
-- `window_s`, optionally only while the device stood still (fuel theft). The CHECKs of 0020 are replaced.
ALTER TABLE alert_rules
    ADD COLUMN window_s integer CHECK (window_s BETWEEN 1 AND 86400),
    ADD COLUMN while_parked boolean NOT NULL DEFAULT false;
ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_op_check;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_op_check
    CHECK (op IN ('>', '<', 'outside', 'offline', 'entered', 'inside', 'left', 'drop'));
ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_check;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_check CHECK (CASE op
    WHEN 'outside' THEN metric IS NOT NULL AND threshold IS NULL AND low IS NOT NULL AND high IS NOT NULL
        AND fence_id IS NULL
    WHEN 'offline' THEN metric IS NULL AND threshold IS NULL AND low IS NULL AND high IS NULL AND for_s > 0
        AND fence_id IS NULL
    WHEN 'entered' THEN fence_id IS NOT NULL AND metric IS NULL AND threshold IS NULL AND low IS NULL
        AND high IS NULL AND for_s = 0
    WHEN 'inside' THEN fence_id IS NOT NULL AND metric IS NULL AND threshold IS NULL AND low IS NULL
        AND high IS NULL AND for_s > 0
    WHEN 'left' THEN fence_id IS NOT NULL AND metric IS NULL AND threshold IS NULL AND low IS NULL
        AND high IS NULL
    WHEN 'drop' THEN metric IS NOT NULL AND threshold > 0 AND low IS NULL AND high IS NULL AND window_s IS NOT NULL
        AND fence_id IS NULL
    ELSE metric IS NOT NULL AND threshold IS NOT NULL AND low IS NULL AND high IS NULL AND fence_id IS NULL END);
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_window_check CHECK ((op = 'drop') = (window_s IS NOT NULL));
