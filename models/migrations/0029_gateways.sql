-- Edge gateways (docs/gateways.md): a device of kind `gateway` publishes on behalf of the sensors of its
-- site over its own connection. A child names its gateway (`gateway_id`); the broker's ACL gives the
-- gateway's account rights on exactly its children's topics (broker/acl.py), so the gateway is rendered
-- from this column and the revision trigger of 0010 must hear of every change to it.
ALTER TABLE devices
    ADD COLUMN gateway_id text REFERENCES devices (id) ON DELETE SET NULL
        CONSTRAINT devices_gateway_not_itself CHECK (gateway_id <> id),
    -- The field site a gateway serves; the grammar of group names (safe in URLs, logs and file names).
    ADD COLUMN site text CONSTRAINT devices_site_grammar CHECK (site ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$');
CREATE INDEX devices_gateway_idx ON devices (gateway_id) WHERE gateway_id IS NOT NULL;

-- A gateway's rights follow its children and its own kind (only a `gateway` is given any); other kind
-- changes render the same files and need no reload.
CREATE TRIGGER devices_gateway_fields_changed AFTER UPDATE OF gateway_id, kind ON devices
    FOR EACH ROW WHEN (OLD.gateway_id IS DISTINCT FROM NEW.gateway_id
                       OR (OLD.kind <> NEW.kind AND 'gateway' IN (OLD.kind, NEW.kind)))
    EXECUTE FUNCTION mqtt_accounts_changed();
CREATE TRIGGER devices_gateway_child_added AFTER INSERT ON devices
    FOR EACH ROW WHEN (NEW.gateway_id IS NOT NULL) EXECUTE FUNCTION mqtt_accounts_changed();
