-- Geofence alert rules (docs/rules.md): a rule may name a fence, for the ops entered, inside and left.
-- The CHECKs of 0014 are replaced (PostgreSQL named them alert_rules_op_check and alert_rules_check).
ALTER TABLE alert_rules ADD COLUMN fence_id bigint REFERENCES geofences (id);
ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_op_check;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_op_check
    CHECK (op IN ('>', '<', 'outside', 'offline', 'entered', 'inside', 'left'));
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
    ELSE metric IS NOT NULL AND threshold IS NOT NULL AND low IS NULL AND high IS NULL AND fence_id IS NULL END);
