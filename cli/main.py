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

from config import Settings, SettingsError, load_settings


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
    up.add_argument("--devices", type=int, help="simulated trucks (FLEETBRIDGE_SIM_DEVICES)")
    up.add_argument("--rate", type=float, help="samples per second per truck (FLEETBRIDGE_SIM_RATE_HZ)")
    down = commands.add_parser("down", help="stop a running `fleet up`")
    down.add_argument("--state-dir", type=Path, help="the state folder of that stack (default .fleet)")
    commands.add_parser("sim", help="run a simulated fleet (see `fleet sim --help`)", add_help=False)
    commands.add_parser("bridge", help="run one bridge instance (FLEETBRIDGE_* settings)")
    commands.add_parser("api", help="serve the API and UI (FLEETBRIDGE_* settings)")
    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("migrate", help="apply pending migrations and create time partitions")
    return parser


def run(argv: list[str], env: Mapping[str, str]) -> int:
    """Run one `fleet` command; the exit status says how it went."""
    if argv[:1] == ["sim"]:
        return _sim(argv[1:], env)
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(env)
    except SettingsError as exc:
        say(f"invalid settings: {exc}")
        return 2
    if args.command == "up":
        return _up(settings, args)
    if args.command == "down":
        return _down(settings, args.state_dir)
    if args.command == "bridge":
        from bridge.__main__ import main as bridge_main

        return bridge_main()
    if args.command == "api":
        from api.__main__ import main as api_main

        return api_main()
    return _migrate(settings)


def _sim(argv: list[str], env: Mapping[str, str]) -> int:
    from firmware_sim.address import DEFAULT_URL
    from firmware_sim.cli import main as sim_main

    try:
        settings = load_settings(env)
    except SettingsError as exc:
        say(f"invalid settings: {exc}")
        return 2
    return sim_main(argv, defaults=settings.sim, default_url=settings.mqtt.url or DEFAULT_URL)


def _up(settings: Settings, args: argparse.Namespace) -> int:
    import dataclasses

    from stack.local import LocalStack, running_stack, with_state_dir
    from stack.process import StackError

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
    stack = LocalStack(settings, say)
    stopping = {"now": False}

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        urls = stack.up(with_sim=not args.no_sim)
        print("\nfleetbridge is running:", flush=True)
        print(f"  operator UI    {urls['ui']}")
        print(f"  REST API       {urls['api']}")
        print(f"  OpenAPI        {urls['openapi']}")
        print(f"  MQTT broker    {urls['mqtt']}  (development mode: anonymous on loopback)")
        print(f"  Redis          {urls['redis']}")
        print(f"  PostgreSQL     {urls['database']}")
        print(f"  logs           {urls['logs']}")
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


def _down(settings: Settings, state_dir: Path | None) -> int:
    from stack.local import stop_running, with_state_dir
    from stack.process import StackError

    settings = with_state_dir(settings, state_dir)
    try:
        stopped = stop_running(settings.stack.state_dir)
    except StackError as exc:
        say(str(exc))
        return 1
    say("stopped" if stopped else f"no stack is running from {settings.stack.state_dir}")
    return 0


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
