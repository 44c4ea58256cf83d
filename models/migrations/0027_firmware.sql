-- Firmware images for over-the-air updates (docs/ota.md), and the version each device last said it runs.
CREATE TABLE firmware_images (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),  -- the device kind it is for
    version     text NOT NULL CHECK (version ~ '^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$'),
    sha256      bytea NOT NULL CHECK (octet_length(sha256) = 32),
    size        bigint NOT NULL CHECK (size > 0),
    data        bytea NOT NULL,
    notes       text CHECK (char_length(notes) <= 2000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    UNIQUE (kind, version),
    CHECK (octet_length(data) = size)
);
-- Stored uncompressed and out of line: a range request reads only the chunks it needs (substring on
-- EXTERNAL storage), and images are compressed already.
ALTER TABLE firmware_images ALTER COLUMN data SET STORAGE EXTERNAL;

ALTER TABLE devices ADD COLUMN firmware_version text;
ALTER TABLE devices ADD COLUMN firmware_reported_at timestamptz;
