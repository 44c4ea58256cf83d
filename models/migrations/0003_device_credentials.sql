-- MQTT accounts: every username the broker accepts, devices and services in one table (broker/accounts.py).
-- One table because the ACL's `pattern` lines grant every username the device rights on
-- fleet/v1/<username>/...: with one primary key, no device id can ever equal a bridge, API or integrator
-- name. A device's account is tied to its registry row (`device_id`, the same string as the username);
-- deleting the device deletes its account. The broker's password and ACL files are rendered from here.
CREATE TABLE mqtt_accounts (
    -- The device-id grammar for every account: no `+ # /` (topic wildcards and levels), no `:` (the
    -- password-file separator), no whitespace or line breaks (the files are line-based).
    username           text PRIMARY KEY CONSTRAINT mqtt_accounts_username_grammar CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    role               text NOT NULL CONSTRAINT mqtt_accounts_role_known CHECK (role IN ('device', 'bridge', 'api', 'integrator')),
    device_id          text GENERATED ALWAYS AS (CASE WHEN role = 'device' THEN username END) STORED
                       UNIQUE REFERENCES devices (id) ON DELETE CASCADE,
    -- Mosquitto 2.0's own PBKDF2-SHA512 string ($7$iterations$salt$hash), copied into the password file
    -- as it is; the secret itself is never stored. NULL: no secret, the account cannot log in.
    secret_hash        text CONSTRAINT mqtt_accounts_secret_hash_format CHECK (secret_hash ~ '^\$7\$[0-9]+\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}$'),
    -- Integrators only: read just this group's devices (devices.group_name); NULL: every device.
    device_group       text CONSTRAINT mqtt_accounts_group_for_integrators CHECK (device_group IS NULL OR role = 'integrator'),
    created_at         timestamptz NOT NULL DEFAULT now(),
    secret_rotated_at  timestamptz,
    -- Revoked accounts keep their row (who, when) but lose their secret for good.
    revoked_at         timestamptz,
    CONSTRAINT mqtt_accounts_revoked_without_secret CHECK (revoked_at IS NULL OR secret_hash IS NULL)
);
