-- The rules engine's own broker role (broker/acl.py): it writes `alerts` and nothing else. The local
-- stack's engine account was made with the bridge role before this step; it moves to the new role.
ALTER TABLE mqtt_accounts DROP CONSTRAINT mqtt_accounts_role_known;
ALTER TABLE mqtt_accounts ADD CONSTRAINT mqtt_accounts_role_known
    CHECK (role IN ('device', 'bridge', 'engine', 'api', 'integrator'));
UPDATE mqtt_accounts SET role = 'engine' WHERE username = 'fleetbridge-engine-1' AND role = 'bridge';
