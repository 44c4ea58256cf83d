"""Subcommands of `fleet`. Each parses its arguments, loads settings once and calls into a package."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from config import Settings, SettingsError, load_settings
from config.redact import redact_url
from stack.state import FIELDS as STATUS_FIELDS

if TYPE_CHECKING:
    import psycopg

    from broker.accounts import DeviceSpec
    from stack.local import LocalStack
    from stack.state import StackState

# Exit status of `fleet status` when no stack runs (as `systemctl status` says of a stopped unit).
NOT_RUNNING = 3
API_KEY_ACTIONS = frozenset({"add", "list", "revoke", "-h", "--help"})


def say(text: str) -> None:
    """Progress for a person at a terminal."""
    print(f"fleet: {text}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The `fleet` command line."""
    parser = argparse.ArgumentParser(prog="fleet", description="fleetbridge: MQTT integration for vehicle fleets")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser("up", help="start the local stack: servers, bridge, API + UI and a simulated fleet")
    up.add_argument("--state-dir", type=Path, help="where the servers keep their data (default .fleet)")
    up.add_argument("--no-sim", action="store_true", help="start no simulated fleet")
    up.add_argument(
        "--no-demo",
        action="store_true",
        help="every simulated truck behaves (by default one overheats and one goes offline for a while)",
    )
    up.add_argument("--devices", type=int, help="simulated trucks (FLEETBRIDGE_SIM_DEVICES)")
    up.add_argument("--rate", type=float, help="samples per second per truck (FLEETBRIDGE_SIM_RATE_HZ)")
    up.add_argument(
        "--tls",
        action="store_true",
        help="also serve MQTT over TLS (dev CA, `fleet certs init`): the bridge with its password, "
        "the simulated trucks with their client certificates",
    )
    down = commands.add_parser("down", help="stop a running `fleet up`")
    down.add_argument("--state-dir", type=Path, help="the state folder of that stack (default .fleet)")
    status = commands.add_parser("status", help="is a local stack running here: its URLs, processes and devices")
    status.add_argument("--state-dir", type=Path, help="the state folder of that stack (default .fleet)")
    status.add_argument(
        "--field",
        choices=STATUS_FIELDS,
        metavar="NAME",
        help=f"print only this value, for scripts: {', '.join(STATUS_FIELDS)}",
    )
    commands.add_parser(
        "sim",
        help="run a simulated fleet (see `fleet sim --help`); without --url, on the running local stack",
        add_help=False,
    )
    commands.add_parser("bridge", help="run one bridge instance (FLEETBRIDGE_* settings)")
    commands.add_parser("api", help="serve the API and UI (FLEETBRIDGE_* settings)")
    commands.add_parser("engine", help="run one rules-engine instance (FLEETBRIDGE_* settings)")
    _add_rule_commands(commands)
    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("migrate", help="apply pending migrations and create time partitions")
    _add_account_commands(commands)
    _add_user_commands(commands)
    certs = commands.add_parser("certs", help="a development CA and TLS certificates for the broker and devices")
    certs_actions = certs.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = certs_actions.add_parser("init", help="make (or reuse) the CA, the broker's and devices' certificates")
    init.add_argument("--dir", type=Path, help="where the certificates go (default STATE_DIR/certs)")
    init.add_argument("--state-dir", type=Path, help="the local stack's state folder (default .fleet)")
    init.add_argument(
        "--device", action="append", default=[], metavar="ID", help="also a client certificate with CN=ID (repeatable)"
    )
    device = certs_actions.add_parser(
        "device", help="a device's client certificate (CN=ID): its login on the certificate listener"
    )
    device.add_argument("id", help="the device id")
    revoke = certs_actions.add_parser(
        "revoke", help="put a device's certificate on the CA's revocation list and reload the broker"
    )
    revoke.add_argument("id", help="the device id")
    revoke.add_argument(
        "--accounts-dir", type=Path, help="the broker's account files, to find it (default STATE_DIR/accounts)"
    )
    revoke.add_argument("--broker-pid", type=int, help="the Mosquitto to reload (default: every local one)")
    device.add_argument(
        "--database-url", help="refuse the name of a non-device account (default FLEETBRIDGE_DATABASE_URL)"
    )
    for action in (device, revoke):
        action.add_argument("--dir", type=Path, help="the CA's folder (default STATE_DIR/certs)")
        action.add_argument("--state-dir", type=Path, help="the local stack's state folder (default .fleet)")
    return parser


ACCOUNT_COMMANDS = frozenset({"devices", "integrators", "services", "broker"})


def _add_account_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`fleet devices|integrators|services|broker ...`: MQTT accounts, and the broker files made from them."""
    lookup = _lookup_options("the accounts database")
    common = argparse.ArgumentParser(add_help=False, parents=[lookup])
    common.add_argument(
        "--no-wait",
        "--no-reload",
        dest="no_wait",
        action="store_true",
        help="do not wait for the broker agents to apply the change (it is stored either way)",
    )
    devices = commands.add_parser("devices", help="device accounts on the broker (a secret is printed once)")
    actions = devices.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", parents=[common], help="register a device, print its new secret")
    add.add_argument("id", help="the device id, also its MQTT username")
    add.add_argument("--kind", help="e.g. truck, trailer, pump (default truck)")
    add.add_argument("--name", help="a name for people")
    add.add_argument("--group", help="the device group (integrators can be limited to one)")
    imported = actions.add_parser(
        "import", parents=[common], help="provision a CSV (id,kind,name,group); print id,secret"
    )
    imported.add_argument("file", type=Path)
    actions.add_parser("list", parents=[lookup], help="every device: id, group, enabled, account, created, last seen")
    rotate = actions.add_parser("rotate", parents=[common], help="print a new secret; the old one stops working")
    rotate.add_argument("id")
    rotate.add_argument("--reinstate", action="store_true", help="also give a revoked device a new secret")
    revoke = actions.add_parser(
        "revoke",
        parents=[common],
        help="remove the secret for good (its connection ends) and revoke its certificate, if the stack's CA made one",
    )
    revoke.add_argument("id")
    revoke.add_argument("--certs-dir", type=Path, help="the development CA's folder (default STATE_DIR/certs)")
    for name, text in (
        ("disable", "take the device off the broker, keeping its secret"),
        ("enable", "let a disabled device connect again"),
    ):
        actions.add_parser(name, parents=[common], help=text).add_argument("id")
    integrators = commands.add_parser("integrators", help="read-only MQTT accounts for third parties")
    integrator_actions = integrators.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = integrator_actions.add_parser("add", parents=[common], help="create one, print its secret (read-only)")
    add.add_argument("name", help="its MQTT username")
    add.add_argument("--group", help="read only this device group's devices")
    integrator_actions.add_parser("list", parents=[lookup], help="every integrator: name, group, state, created")
    services = commands.add_parser("services", help="MQTT accounts of bridge, engine and API instances")
    service_actions = services.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = service_actions.add_parser("add", parents=[common], help="create one, print its secret")
    add.add_argument("role", choices=["bridge", "engine", "api"])
    add.add_argument(
        "name",
        help="its MQTT username, also its client id on the broker: one account per instance, "
        "e.g. fleetbridge-bridge-2 (the bridge's FLEETBRIDGE_MQTT_CLIENT_ID)",
    )
    for group_actions in (integrator_actions, service_actions):
        group_actions.add_parser("rotate", parents=[common], help="print a new secret").add_argument("name")
        group_actions.add_parser("revoke", parents=[common], help="remove its secret for good").add_argument("name")
    broker = commands.add_parser("broker", help="the broker's account files")
    actions = broker.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "reload", parents=[common], help="have every broker agent rewrite its files and reload its broker now"
    )
    agent = actions.add_parser(
        "agent",
        help="run beside a Mosquitto: keep its password and ACL files equal to the database and reload it "
        "at every account change (until stopped)",
    )
    agent.add_argument("--database-url", help="the accounts database (default FLEETBRIDGE_DATABASE_URL)")
    agent.add_argument("--state-dir", type=Path, help="the local stack's state folder (default .fleet)")
    agent.add_argument(
        "--accounts-dir",
        type=Path,
        help="where this broker reads its password and ACL files (default STATE_DIR/accounts)",
    )
    found = agent.add_mutually_exclusive_group()
    found.add_argument("--broker-pid", type=int, help="the Mosquitto to reload")
    found.add_argument(
        "--pid-file", type=Path, help="read the Mosquitto's pid here at every reload (its pid_file, or systemd's)"
    )
    agent.add_argument("--name", help="this agent's name in mqtt_broker_agents (default HOST:ACCOUNTS_DIR)")


def _add_user_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`fleet users add|api-key`: operator accounts and integrator API keys of the HTTP API."""
    lookup = _lookup_options("the API's database")
    users = commands.add_parser("users", help="operator accounts and API keys of the HTTP API")
    actions = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", parents=[lookup], help="add an operator account (the password is prompted for)")
    add.add_argument("name", help="the username")
    add.add_argument("--role", required=True, choices=["admin", "operator", "viewer"])
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    key = actions.add_parser("api-key", help="integrator API keys: add (printed once), list, revoke")
    key_actions = key.add_subparsers(dest="key_action", required=True, metavar="ACTION")
    key_add = key_actions.add_parser(
        "add", parents=[lookup], help="make a read-only key and print it, once (`api-key NAME` does the same)"
    )
    key_add.add_argument("name", help="who the key is for")
    key_add.add_argument("--group", help="read only this device group's devices (devices.group_name)")
    key_actions.add_parser("list", parents=[lookup], help="every key: id, name, prefix, group, created, revoked")
    key_revoke = key_actions.add_parser("revoke", parents=[lookup], help="revoke a key: it stops working at once")
    key_revoke.add_argument("id", type=int, help="the key's id (`fleet users api-key list`)")


def _add_rule_commands(commands: Any) -> None:
    lookup = _lookup_options("the database holding the rules")
    rules = commands.add_parser("rules", help="alert rules the engine evaluates (docs/rules.md)")
    actions = rules.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[lookup], help="every rule: id, name, condition, severity, scope")
    add = actions.add_parser("add", parents=[lookup], help="add a rule; it takes effect within a second")
    add.add_argument("name", help="what operators see, e.g. 'engine overheating'")
    add.add_argument("--metric", help="a known metric, e.g. engine_temp (none for offline and the geofence ops)")
    add.add_argument(
        "--op", required=True, choices=[">", "<", "outside", "offline", "entered", "inside", "left", "drop"]
    )
    add.add_argument("--fence", dest="fence_id", type=int, help="the geofence's id, for entered, inside and left")
    add.add_argument("--threshold", type=float, help="the limit of > and <")
    add.add_argument("--low", type=float, help="the range's low end, for outside")
    add.add_argument("--high", type=float, help="the range's high end, for outside")
    add.add_argument("--for", dest="for_s", type=int, default=0, help="seconds the condition must hold (default 0)")
    add.add_argument("--clear-threshold", type=float, help="hysteresis: clear only beyond this limit")
    add.add_argument(
        "--clear-for", dest="clear_for_s", type=int, default=0, help="seconds the clear condition must hold"
    )
    add.add_argument(
        "--window", dest="window_s", type=int, help="for --op drop: seconds the fall (--threshold) happens in"
    )
    add.add_argument(
        "--while-parked", action="store_true", help="for --op drop: only while the device stands still (theft)"
    )
    add.add_argument("--severity", default="warning", choices=["critical", "major", "minor", "warning"])
    scope = add.add_mutually_exclusive_group()
    scope.add_argument("--device", dest="device_id", help="only this device")
    scope.add_argument("--kind", help="only devices of this kind")
    scope.add_argument("--group", help="only devices of this group")
    add.add_argument(
        "--notify",
        action="append",
        default=[],
        metavar="CHANNEL[:EVENT,...]",
        help="a notification channel's id, told of raised and cleared alerts, or of the events listed"
        " (raised, acknowledged, cleared, commented, reopened, retracted); repeatable",
    )
    actions.add_parser(
        "defaults",
        parents=[lookup],
        help="add the default rules (overheating, low battery, low fuel, overspeed, offline) whose name is not taken",
    )
    remove = actions.add_parser("remove", parents=[lookup], help="remove a rule; its open alerts are cleared")
    remove.add_argument("id", type=int, help="the rule's id (`fleet rules list`)")


def _lookup_options(what: str) -> argparse.ArgumentParser:
    """--database-url and --state-dir: which database a command uses (flag, variable, else the running stack's)."""
    lookup = argparse.ArgumentParser(add_help=False)
    lookup.add_argument(
        "--database-url", help=f"{what} (default FLEETBRIDGE_DATABASE_URL, else the running local stack's)"
    )
    lookup.add_argument("--state-dir", type=Path, help="the local stack's state folder (default .fleet)")
    return lookup


def run(argv: list[str], env: Mapping[str, str]) -> int:
    """Run one `fleet` command; the exit status says how it went."""
    if argv[:1] == ["sim"]:
        return _sim(argv[1:], env)
    if argv[:2] == ["users", "api-key"] and len(argv) > 2 and argv[2] not in API_KEY_ACTIONS:
        argv = [*argv[:2], "add", *argv[2:]]  # `fleet users api-key NAME`, as before `list` and `revoke` came
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(env)
    except SettingsError as exc:
        say(f"invalid settings: {exc}")
        return 2
    if args.command == "up":
        return _up(settings, args, env)
    if args.command == "down":
        return _down(settings, args.state_dir)
    if args.command == "status":
        return _status(settings, args)
    if args.command in {"bridge", "api", "engine"}:
        return _serve(args.command)
    if args.command == "rules":
        return _rules(settings, args)
    if args.command in {"devices", "integrators"} and args.action == "list":
        return _roster(settings, args)
    if args.command in ACCOUNT_COMMANDS:
        return _accounts(settings, args)
    if args.command == "users":
        return _users(settings, args)
    if args.command == "certs":
        return _certs(settings, args)
    return _migrate(settings)


def _serve(process: str) -> int:
    """Run the bridge, the API or the engine in this process, until SIGINT or SIGTERM."""
    if process == "bridge":
        from bridge.__main__ import main as bridge_main

        return bridge_main()
    if process == "api":
        from api.__main__ import main as api_main

        return api_main()
    from engine.__main__ import main as engine_main

    return engine_main()


def _running(settings: Settings, state_dir: Path | None) -> StackState | None:
    """The local stack running from the state folder (`--state-dir`, else the setting), if any."""
    from stack.local import with_state_dir
    from stack.state import running_stack

    return running_stack(with_state_dir(settings, state_dir).stack.state_dir)


def _database_url(settings: Settings, args: argparse.Namespace) -> str | None:
    """The database a command uses: --database-url, else FLEETBRIDGE_DATABASE_URL, else the running stack's."""
    explicit = getattr(args, "database_url", None) or settings.database.url
    if explicit:
        return str(explicit)
    stack = _running(settings, getattr(args, "state_dir", None))
    return stack.urls.get("database") if stack is not None else None


def _no_database(settings: Settings, args: argparse.Namespace) -> int:
    from stack.local import with_state_dir

    state = with_state_dir(settings, getattr(args, "state_dir", None)).stack.state_dir
    say(
        f"no database: no local stack is running from {state} and none is named. Start one with `fleet up` "
        "(run this command in the same folder, or pass --state-dir), or set FLEETBRIDGE_DATABASE_URL "
        "(or pass --database-url)"
    )
    return 2


def _check_certificate_names(url: str, names: list[str]) -> None:
    import psycopg

    from broker.accounts import check_certificate_name

    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            check_certificate_name(conn, name)


def _certs(settings: Settings, args: argparse.Namespace) -> int:
    import psycopg

    from broker import reload
    from broker.accounts import AccountError
    from broker.certs import CertificateError, device_certificate, init_certs, revoke_device_certificate
    from stack.local import with_state_dir

    state = with_state_dir(settings, args.state_dir).stack.state_dir
    folder = args.dir or state / "certs"
    try:
        if args.action == "revoke":
            if not revoke_device_certificate(folder, args.id):
                say(f"{folder} holds no certificate of {args.id} (revoked already, or never made here)")
                return 1
            stack = _running(settings, args.state_dir)
            stack_accounts = stack.accounts_dir if stack is not None else None
            paths = reload.account_paths(args.accounts_dir or stack_accounts or state / "accounts")
            pids = [args.broker_pid] if args.broker_pid is not None else reload.find_brokers(paths)
            for pid in pids:
                reload.reload_broker(pid, paths)
            reloaded = f"reloaded mosquitto (pid {', '.join(map(str, pids))})" if pids else "no running mosquitto found"
            say(f"revoked the certificate of {args.id}: {folder / 'crl.pem'} rewritten; {reloaded}")
            return 0
        ids = [args.id] if args.action == "device" else args.device
        url = _database_url(settings, args) if ids else None
        if ids and url:
            _check_certificate_names(url, ids)
        files = init_certs(folder)
        devices = [device_certificate(folder, device_id) for device_id in ids]
    except (CertificateError, reload.ReloadError, AccountError, OSError) as exc:
        say(str(exc))
        return 1
    except psycopg.OperationalError as exc:
        say(f"cannot reach the database to check the names: {exc}")
        return 1
    say(f"CA {files.ca_file}; broker certificate {files.cert_file} (localhost, 127.0.0.1); CRL {files.crl_file}")
    for device in devices:
        say(f"device {device.device_id}: certificate {device.cert_file}, key {device.key_file}")
    return 0


def _sim(argv: list[str], env: Mapping[str, str]) -> int:
    """`fleet sim`: without --url, on FLEETBRIDGE_MQTT_URL, else on the running local stack's broker with
    its simulated trucks' logins; with neither, refused (never a guessed broker)."""
    from firmware_sim.cli import SimTarget
    from firmware_sim.cli import main as sim_main

    try:
        settings = load_settings(env)
    except SettingsError as exc:
        say(f"invalid settings: {exc}")
        return 2
    target: SimTarget | None = None
    if settings.mqtt.url:
        target = SimTarget(settings.mqtt.url, origin="FLEETBRIDGE_MQTT_URL")
    elif (stack := _running(settings, None)) is not None and stack.sim_url:
        origin = f"the local stack running from {settings.stack.state_dir} (its broker, its trucks' logins)"
        target = SimTarget(stack.sim_url, stack.device_secrets, stack.sim_cert_dir, origin=origin)
        simulator = stack.processes.get("simulator")
        if simulator is not None and simulator.is_running() and "--url" not in argv:
            # The broker takes the user name as the client id: two connections of one truck end each other.
            say(
                "the stack's own simulator drives these trucks too: each pair of connections of one truck will "
                "end each other in turn. To drive them from here alone, start the stack with `fleet up --no-sim`"
            )
    no_target = (
        f"no broker to publish to: no local stack is running from {settings.stack.state_dir}. Start one with "
        "`fleet up` (and run `fleet sim` in the same folder, or set FLEETBRIDGE_STACK_STATE_DIR), or pass "
        "--url mqtt://[user[:password]@]host[:port] (or set FLEETBRIDGE_MQTT_URL)"
    )
    return sim_main(argv, defaults=settings.sim, target=target, no_target=no_target, prog="fleet sim")


def _up(settings: Settings, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    import dataclasses

    from stack.local import LocalStack, with_state_dir
    from stack.process import StackError
    from stack.state import running_stack

    settings = with_state_dir(settings, args.state_dir)
    sim = settings.sim
    if args.devices is not None or args.rate is not None:
        sim = dataclasses.replace(
            sim,
            devices=args.devices if args.devices is not None else sim.devices,
            rate_hz=args.rate if args.rate is not None else sim.rate_hz,
        )
        settings = dataclasses.replace(settings, sim=sim)
    if running_stack(settings.stack.state_dir) is not None:
        say(f"a stack is already running from {settings.stack.state_dir}: stop it with `fleet down`")
        return 1
    stack = LocalStack(settings, say, dict(env))
    stopping = {"now": False}

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        urls = stack.up(with_sim=not args.no_sim, tls=args.tls, demo=not args.no_demo)
        _print_urls(stack, urls)
        print("Press Ctrl-C (or run `fleet down`) to stop.\n", flush=True)
        while not stopping["now"]:
            exited = stack.check()
            if exited is not None:
                say(f"{exited} exited unexpectedly: see {urls['logs']}/{exited}.log; stopping the stack")
                return 1
            time.sleep(0.5)
    except StackError as exc:
        say(str(exc))
        return 1
    else:
        return 0
    finally:
        say("stopping")
        stack.down()
        say(f"stopped at {datetime.now(UTC):%H:%M:%S} UTC")


def _print_urls(stack: LocalStack, urls: dict[str, str]) -> None:
    """What `fleet up` started, where, and how to sign in."""
    settings = stack.settings
    print("\nfleetbridge is running:", flush=True)
    print(f"  operator UI    {urls['ui']}")
    if stack.operator_login:
        print(f"  sign in as     {stack.operator_login}  (demo admin; kept in {settings.stack.state_dir}/)")
    else:
        print("  sign in as     your operator account (make one with `fleet users add NAME --role admin`)")
    print(f"  REST API       {urls['api']}")
    print(f"  OpenAPI        {urls['openapi']}")
    mode = "  (per-device accounts; device secrets in the state folder)" if stack.started_broker else ""
    print(f"  MQTT broker    {redact_url(urls['mqtt'])}{mode}")
    if "mqtts" in urls:
        print(f"  MQTT over TLS  {urls['mqtts']}")
    if "mqtts_certificates" in urls:
        print(f"  certificates   {urls['mqtts_certificates']}  (device logins by client certificate)")
    print(f"  Redis          {redact_url(urls['redis'])}")
    print(f"  PostgreSQL     {redact_url(urls['database'])}")
    print(f"  logs           {urls['logs']}")
    for change in stack.port_changes:
        print(f"  !!! {change.warning()}")
    print("`fleet status` shows this again; other `fleet` commands run in this folder use this stack.")


def _down(settings: Settings, state_dir: Path | None) -> int:
    from stack.local import with_state_dir
    from stack.process import StackError
    from stack.state import stale_state, stop_running

    folder = with_state_dir(settings, state_dir).stack.state_dir
    stale = stale_state(folder)
    try:
        stopped = stop_running(folder)
    except StackError as exc:
        say(str(exc))
        return 1
    if stopped:
        say("stopped")
    elif stale:
        say(f"no stack is running from {folder}: removed its stale state file (nothing was signalled)")
    else:
        say(f"no stack is running from {folder}")
    return 0


def _status(settings: Settings, args: argparse.Namespace) -> int:
    """`fleet status`: whether a stack runs from the state folder, its URLs, processes and devices."""
    import psycopg

    from broker.roster import count_devices
    from stack.local import with_state_dir

    folder = with_state_dir(settings, args.state_dir).stack.state_dir
    stack = _running(settings, args.state_dir)
    if stack is None:
        say(f"no local stack is running from {folder.absolute()}: start one with `fleet up`")
        return NOT_RUNNING
    if args.field is not None:
        value = stack.value(args.field)
        if not value:
            say(f"this stack has no {args.field}")
            return 1
        print(value, flush=True)
        return 0
    print(f"fleetbridge is running from {folder.absolute()} (fleet up, pid {stack.owner.pid})")
    for name in ("ui_url", "api_url", "mqtt_url", "mqtts_url", "mqtts_certificates_url", "redis_url", "database_url"):
        if value := stack.value(name):
            print(f"  {name:<24}{redact_url(value)}")
    if stack.device_secrets is not None:
        print(f"  {'device secrets':<24}{stack.device_secrets}  (the simulated trucks')")
    dead = [name for name, identity in stack.processes.items() if not identity.is_running()]
    alive = [name for name in stack.processes if name not in dead]
    print(f"  {'processes running':<24}{', '.join(alive) or 'none'}")
    if dead:
        print(f"  {'processes EXITED':<24}{', '.join(dead)}  (see {stack.urls.get('logs', 'the logs')})")
    try:
        with psycopg.connect(stack.urls["database"], autocommit=True, connect_timeout=3) as conn:
            counts = count_devices(conn)
        print(f"  {'devices':<24}{counts.devices} registered, {counts.online} online")
    except psycopg.Error as exc:
        print(f"  {'devices':<24}unknown: the database does not answer ({exc})")
    return 1 if dead else 0


def _roster(settings: Settings, args: argparse.Namespace) -> int:
    """`fleet devices list` / `fleet integrators list`: a table on stdout."""
    import psycopg

    from broker.roster import list_devices, list_integrators

    url = _database_url(settings, args)
    if url is None:
        return _no_database(settings, args)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            if args.command == "devices":
                devices = list_devices(conn)
                rows = [
                    [
                        d.id,
                        d.group or "-",
                        "yes" if d.enabled else "no",
                        d.account,
                        _when(d.created_at),
                        _when(d.last_seen),
                        d.presence or "-",
                    ]
                    for d in devices
                ]
                header = ["ID", "GROUP", "ENABLED", "ACCOUNT", "CREATED", "LAST SEEN", "PRESENCE"]
            else:
                integrators = list_integrators(conn)
                rows = [
                    [
                        i.name,
                        i.group or "(every device)",
                        "active" if i.active else "revoked",
                        _when(i.created_at),
                        _when(i.revoked_at),
                    ]
                    for i in integrators
                ]
                header = ["NAME", "GROUP", "STATE", "CREATED", "REVOKED"]
    except psycopg.Error as exc:
        say(f"cannot use the database (is it migrated? `fleet db migrate`): {exc}")
        return 1
    _table(header, rows)
    return 0


def _rules(settings: Settings, args: argparse.Namespace) -> int:
    """`fleet rules list|add|remove|defaults` on the database, as the REST API does them."""
    import getpass

    import msgspec
    import psycopg

    from models.rule_store import (
        UnknownChannelError,
        UnknownFenceError,
        add_default_rules,
        add_rule,
        list_rules,
        remove_rule,
    )
    from models.rules import RuleSpec, rule_problem

    url = _database_url(settings, args)
    if url is None:
        return _no_database(settings, args)
    who = f"cli:{getpass.getuser()}"
    spec = None
    if args.action == "add":
        fields = (
            "metric",
            "op",
            "threshold",
            "low",
            "high",
            "for_s",
            "clear_threshold",
            "clear_for_s",
            "severity",
            "window_s",
        )
        given = {name: getattr(args, name) for name in (*fields, "device_id", "kind", "group", "fence_id")}
        try:
            notify = [_notify_target(text) for text in args.notify]
        except ValueError as exc:
            say(f"invalid --notify: {exc}")
            return 2
        try:
            spec = msgspec.convert(
                {"name": args.name, "notify": notify, "while_parked": args.while_parked}
                | {k: v for k, v in given.items() if v is not None},
                RuleSpec,
            )
        except msgspec.ValidationError as exc:
            say(f"invalid rule: {exc}")
            return 2
        problem = rule_problem(spec)
        if problem is not None:
            say(f"invalid rule: {problem}")
            return 2
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            if spec is not None:
                try:
                    row = add_rule(conn, spec, who)
                except (UnknownChannelError, UnknownFenceError) as exc:
                    say(str(exc))
                    return 2
                print(row["id"])
                return 0
            if args.action == "remove":
                if not remove_rule(conn, args.id, who):
                    say(f"no rule {args.id}")
                    return 1
                return 0
            rows = add_default_rules(conn, who) if args.action == "defaults" else list_rules(conn)
    except psycopg.Error as exc:
        say(f"cannot use the database (is it migrated? `fleet db migrate`): {exc}")
        return 1
    if args.action == "defaults":
        if not rows:
            say("every default rule is there already (a rule of its name exists): nothing added")
            return 0
        say(f"added {len(rows)} default rules:")
    _table(
        ["ID", "NAME", "CONDITION", "CLEARS", "SEVERITY", "SCOPE"],
        [[str(r["id"]), r["name"], _condition(r), _clearing(r), r["severity"], _scope(r)] for r in rows],
    )
    return 0


def _notify_target(text: str) -> dict[str, Any]:
    """`3` or `3:raised,acknowledged` as a `NotifyTarget` mapping."""
    channel, _, events = text.partition(":")
    if not channel.isdigit():
        raise ValueError(f"{text!r}: the channel is its id (a number), e.g. 3 or 3:raised,cleared")
    target: dict[str, Any] = {"channel": int(channel)}
    if events:
        target["events"] = events.split(",")
    return target


def _condition(rule: Mapping[str, Any]) -> str:
    if rule["op"] == "offline":
        return f"offline for more than {rule['for_s']} s"
    if rule["op"] == "drop":
        parked = " while parked" if rule["while_parked"] else ""
        fall = f"{rule['metric']} falls more than {rule['threshold']:g} within {rule['window_s']} s{parked}"
        return fall + (f" for {rule['for_s']} s" if rule["for_s"] else "")
    if rule["op"] in ("entered", "inside", "left"):
        from models.rules import duration_text

        stay = f" for more than {duration_text(rule['for_s'])}" if rule["for_s"] else ""
        if rule["op"] == "left":
            return f"left fence {rule['fence_id']}" + (f", outside{stay}" if stay else "")
        return f"{rule['op']} fence {rule['fence_id']}{stay}"
    limit = (
        f"outside {rule['low']:g}…{rule['high']:g}"
        if rule["op"] == "outside"
        else f"{rule['op']} {rule['threshold']:g}"
    )
    return f"{rule['metric']} {limit}" + (f" for {rule['for_s']} s" if rule["for_s"] else "")


def _clearing(rule: Mapping[str, Any]) -> str:
    if rule["op"] == "offline":
        return "back online"
    if rule["op"] == "left":
        return "back inside"
    if rule["op"] in ("entered", "inside"):
        return "at the exit"
    limit = "when not" if rule["clear_threshold"] is None else f"beyond {rule['clear_threshold']:g}"
    return limit + (f" for {rule['clear_for_s']} s" if rule["clear_for_s"] else "")


def _scope(rule: Mapping[str, Any]) -> str:
    for field, label in (("device_id", "device"), ("kind", "kind"), ("group_name", "group")):
        if rule[field] is not None:
            return f"{label} {rule[field]}"
    return "every device"


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


def _table(header: list[str], rows: list[list[str]]) -> None:
    """Columns aligned for a terminal, on stdout; a note on stderr when there are no rows."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if not rows:
        say("none yet")


def _migrate(settings: Settings) -> int:
    import psycopg

    from models.migrate import migrate
    from models.partitions import maintain

    if not settings.database.url:
        say("set FLEETBRIDGE_DATABASE_URL to the database to migrate (or use `fleet up`, which migrates)")
        return 2
    try:
        with psycopg.connect(settings.database.url, autocommit=True) as conn:
            applied = migrate(conn, retention_days=settings.database.retention_days)
            report = maintain(
                conn,
                now=datetime.now(UTC),
                ahead_days=settings.database.partitions_ahead_days,
                retention_days=settings.database.retention_days,
            )
    except psycopg.OperationalError as exc:
        say(f"cannot reach the database: {exc}")
        return 1
    say(
        f"applied {len(applied)} migrations {applied}; partitions created {len(report.created)}, dropped {len(report.dropped)}"
    )
    return 0


def _users(settings: Settings, args: argparse.Namespace) -> int:
    import getpass

    import psycopg

    from api.accounts.admin import add_api_key, add_user
    from api.accounts.roles import Role
    from api.accounts.services import Refused

    url = _database_url(settings, args)
    if url is None:
        return _no_database(settings, args)
    try:
        if args.action == "add":
            if args.password_stdin:
                password = sys.stdin.readline().removesuffix("\n")
            elif not sys.stdin.isatty():
                say("no terminal to ask for the password on: pass it with --password-stdin")
                return 2
            else:
                password = getpass.getpass(f"password for {args.name}: ")
                if getpass.getpass("again: ") != password:
                    say("the passwords differ")
                    return 1
            user = add_user(url, args.name, Role(args.role), password)
            if isinstance(user, Refused):
                say(user.reason)
                return 1
            say(f"added {user.username} ({user.role})")
            return 0
        if args.key_action != "add":
            return _api_key_admin(url, args)
        key = add_api_key(url, args.name, args.group)
    except psycopg.Error as exc:
        say(f"cannot use the database (is it migrated? `fleet db migrate`): {exc}")
        return 1
    if isinstance(key, Refused):
        say(key.reason)
        return 1
    print(key.key, flush=True)
    scope = f"devices of group {key.group!r}" if key.group is not None else "every device"
    say(f"API key {key.id} for {key.name} (read-only, {scope}) shown above, and only now; send it as X-API-Key")
    return 0


def _api_key_admin(url: str, args: argparse.Namespace) -> int:
    """`fleet users api-key list|revoke` (raises `psycopg.Error` like the other account commands)."""
    from api.accounts.admin import api_keys, revoke_key

    if args.key_action == "revoke":
        if not revoke_key(url, args.id):
            say(f"no API key has id {args.id} (`fleet users api-key list` shows them)")
            return 1
        say(f"revoked API key {args.id}: it no longer works")
        return 0
    rows = [
        [str(k.id), k.name, f"{k.prefix}…", k.group or "(every device)", _when(k.created_at), _when(k.revoked_at)]
        for k in api_keys(url)
    ]
    _table(["ID", "NAME", "PREFIX", "GROUP", "CREATED", "REVOKED"], rows)
    return 0


def _accounts(settings: Settings, args: argparse.Namespace) -> int:
    """An account change, stored in the database; the broker agents put it into effect.

    Exit 0 only when every live agent applied it within a moment; 3 when it is stored but no broker has it
    yet (the message says why and what to do).
    """
    import psycopg

    from broker import accounts, delivery
    from broker.acl import AclError
    from broker.certs import CertificateError
    from broker.passwords import PasswordFormatError
    from stack.local import with_state_dir

    url = _database_url(settings, args)
    if url is None:
        return _no_database(settings, args)
    state = with_state_dir(settings, args.state_dir).stack.state_dir
    if args.command == "broker" and args.action == "agent":
        # Beside a running local stack whose database this is, its broker reads its files where the stack
        # put them (not always STATE_DIR/accounts: as root, server data may live elsewhere).
        stack = _running(settings, args.state_dir)
        stack_accounts = stack.accounts_dir if stack is not None and stack.urls.get("database") == url else None
        return _broker_agent(url, args.accounts_dir or stack_accounts or state / "accounts", args)
    # Only `devices revoke` has --certs-dir: a revoked device's certificate is revoked with it.
    certs_dir = getattr(args, "certs_dir", None) or state / "certs"
    try:
        specs = accounts.read_device_csv(args.file.read_text()) if args.action == "import" else []
        with psycopg.connect(url, autocommit=True) as conn:
            if args.command == "broker":
                delivery.request_reload(conn)
            elif _change_account(conn, args, specs, certs_dir):
                delivery.request_reload(conn)  # the CRL changed on this host: its broker must reread it
            if args.no_wait:
                say("stored; not waiting for the broker agents (--no-wait)")
                return 0
            outcome = delivery.wait_applied(conn)
    except (accounts.AccountError, AclError, PasswordFormatError, CertificateError, OSError) as exc:
        say(str(exc))
        return 1
    except psycopg.OperationalError as exc:
        say(f"cannot reach the database: {exc}")
        return 1
    say(f"account revision {outcome.revision}: {outcome.describe()}")
    return 0 if outcome.complete else 3


def _broker_agent(url: str, accounts_dir: Path, args: argparse.Namespace) -> int:
    """`fleet broker agent`: serve until SIGINT or SIGTERM."""
    import logging

    from broker.agent import AgentConfig, BrokerAgent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = AgentConfig(url, accounts_dir, broker_pid=args.broker_pid, pid_file=args.pid_file, name=args.name or "")
    if config.broker_pid is None and config.pid_file is None:
        say("no --broker-pid or --pid-file: the files are kept current, but no broker is reloaded")
    agent = BrokerAgent(config)

    def stop(signum: int, frame: FrameType | None) -> None:
        agent.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    say(f"broker agent {config.agent_name}: keeping {accounts_dir} current (Ctrl-C to stop)")
    agent.run()
    return 0


def _change_account(
    conn: psycopg.Connection[tuple[Any, ...]], args: argparse.Namespace, specs: list[DeviceSpec], certs_dir: Path
) -> bool:
    """One account change; a new secret goes to stdout at once. True when a certificate was revoked too."""
    from broker import accounts
    from broker.acl import Role
    from broker.certs import revoke_device_certificate

    roles = {"devices": {Role.DEVICE}, "integrators": {Role.INTEGRATOR}, "services": accounts.SERVICE_ROLES}
    role = args.command.removesuffix("s")
    name = getattr(args, "id", None) or getattr(args, "name", None) or ""
    if args.action == "import":
        for credential in accounts.import_devices(conn, specs):
            print(f"{credential.username},{credential.secret}", flush=True)
        say(f"provisioned {len(specs)} devices; their secrets are shown above, and only now")
    elif args.action in {"add", "rotate"}:
        if args.action == "rotate":
            reinstate = getattr(args, "reinstate", False)
            credential = accounts.rotate(conn, name, roles=roles[args.command], reinstate=reinstate)
        elif role == Role.DEVICE:
            credential = accounts.add_device(conn, accounts.DeviceSpec(name, args.kind, args.name, args.group))
        elif role == Role.INTEGRATOR:
            credential = accounts.add_integrator(conn, name, group=args.group)
        else:
            credential = accounts.add_service_account(conn, Role(args.role), name)
        print(credential.secret, flush=True)
        say(f"{args.action}: new secret for {name} shown above, and only now")
    elif args.action == "revoke":
        revoked = accounts.revoke(conn, name, roles=roles[args.command])
        say(f"revoked {name}" if revoked else f"{name} was revoked already")
        if role == Role.DEVICE and revoke_device_certificate(certs_dir, name):
            # The certificate listener reads no password file: without this the certificate would
            # still log in (to an account whose ACL block denies everything).
            say(f"revoked its certificate too ({certs_dir / 'crl.pem'} rewritten)")
            return True
    else:
        accounts.set_device_disabled(conn, name, args.action == "disable")
        say(f"{args.action}d {name}")
    return False
