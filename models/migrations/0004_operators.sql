-- People who use the API and the operator page (api/accounts/): each logs in with a password and gets
-- short-lived tokens carrying the account's role. Only an argon2id hash of the password is kept, in the
-- PHC string form argon2-cffi writes ($argon2id$v=19$m=…,t=…,p=…$salt$hash): the parameters travel
-- with each hash, so raising them later leaves older hashes verifiable.
CREATE TABLE users (
    username       text PRIMARY KEY CONSTRAINT users_username_grammar CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    role           text NOT NULL CONSTRAINT users_role_known CHECK (role IN ('admin', 'operator', 'viewer')),
    password_hash  text NOT NULL CONSTRAINT users_password_hash_format CHECK (password_hash LIKE '$argon2id$%'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled       boolean NOT NULL DEFAULT false
);

-- Read-only API keys of integrators. The key itself (256 random bits) is shown once when made; only its
-- SHA-256 digest is kept, which is enough for a secret that cannot be guessed (no salt or slow hash
-- needed: there is no dictionary to attack) and lets a request be checked with one index lookup.
CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL CONSTRAINT api_keys_name_grammar CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    key_sha256   bytea NOT NULL UNIQUE CONSTRAINT api_keys_digest_size CHECK (octet_length(key_sha256) = 32),
    -- The key's first characters, to recognise it in listings and logs without revealing it.
    key_prefix   text NOT NULL,
    -- Read only this group's devices (devices.group_name); NULL: every device.
    group_name   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Revoked keys keep their row (who, when) and stop working at once.
    revoked_at   timestamptz
);
