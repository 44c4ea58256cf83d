-- Account changes reach every broker through the broker agent beside it (broker/agent.py), never through
-- the process that made the change: the API and the CLI only write these tables.
--
-- `mqtt_accounts_revision` counts every change of what the broker files are rendered from (accounts, and
-- the devices' `disabled` and `group_name`); the trigger bumps it and NOTIFYs `fleetbridge_mqtt_accounts`
-- in the changing transaction, so an agent hears of a change exactly when it commits, and reads the
-- revision in the same snapshot as the accounts it renders. One row: account changes are rare, and
-- serialising them on it costs nothing next to the guarantee that revision N means "everything up to N".
CREATE TABLE mqtt_accounts_revision (
    singleton  boolean PRIMARY KEY DEFAULT true CONSTRAINT mqtt_accounts_revision_one_row CHECK (singleton),
    revision   bigint NOT NULL
);
INSERT INTO mqtt_accounts_revision (revision) VALUES (0);

CREATE FUNCTION mqtt_accounts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bumped bigint;
BEGIN
    UPDATE mqtt_accounts_revision SET revision = revision + 1 RETURNING revision INTO bumped;
    PERFORM pg_notify('fleetbridge_mqtt_accounts', bumped::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER mqtt_accounts_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mqtt_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION mqtt_accounts_changed();
-- Only what the files depend on: the bridge's registrations and presence updates never fire these.
CREATE TRIGGER devices_account_fields_changed AFTER UPDATE OF disabled, group_name OR DELETE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION mqtt_accounts_changed();
CREATE TRIGGER devices_grouped_device_added AFTER INSERT ON devices
    FOR EACH ROW WHEN (NEW.group_name IS NOT NULL) EXECUTE FUNCTION mqtt_accounts_changed();

-- Each agent records the revision its broker has applied (files written, broker signalled), and when it
-- was last alive. A command or API answer waits briefly for the live agents to reach its revision, and
-- says plainly when none has: a change is never reported as in effect when no broker has it.
CREATE TABLE mqtt_broker_agents (
    name              text PRIMARY KEY,
    host              text NOT NULL,
    accounts_dir      text NOT NULL,
    applied_revision  bigint NOT NULL,
    applied_at        timestamptz NOT NULL,
    seen_at           timestamptz NOT NULL
);
