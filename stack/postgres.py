"""Start a real PostgreSQL server on loopback for tests and the local stack.

The data folder is initialised on first use (`initdb`) and reused afterwards, so a server that was
stopped or SIGKILLed comes back with its data on the same port; PostgreSQL itself recovers from a
crash and replaces the stale `postmaster.pid` of a dead server.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

from stack.process import (
    LOOPBACK,
    LaunchSpec,
    ServerProcess,
    ServerStartError,
    check_enterable,
    claim_port,
    give_dir_to,
    running_as_root,
)

POSTGRES_USER: Final = "postgres"
DEFAULT_DATABASE: Final = "fleetbridge"
DEBIAN_ROOT: Final = Path("/usr/lib/postgresql")
PROBE_TIMEOUT_S: Final = 2
# A Unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux, with the file name).
SOCKET_PATH_MAX_CHARS: Final = 100
INITDB_TIMEOUT_S: Final = 120


def postgres_bindir(bindir: Path | None = None) -> Path:
    """`bindir`, else the newest `/usr/lib/postgresql/<version>/bin`; `ServerStartError` if none has `postgres`."""
    if bindir is None:
        found = [path for path in DEBIAN_ROOT.glob("*/bin") if path.parent.name.isdigit()]
        if found:
            bindir = max(found, key=lambda path: int(path.parent.name))
    if bindir is None or not (bindir / "postgres").exists():
        raise ServerStartError(
            f"no PostgreSQL server binaries in {bindir or DEBIAN_ROOT / '<version>/bin'}: "
            "install postgresql, or pass the folder holding initdb and postgres"
        )
    return bindir


def admin_conninfo(port: int, dbname: str = "postgres") -> str:
    """A libpq connection string for the superuser on the loopback server."""
    return f"host={LOOPBACK} port={port} user={POSTGRES_USER} dbname={dbname} connect_timeout={PROBE_TIMEOUT_S}"


def postgres_answers(port: int) -> bool:
    """True when the server on 127.0.0.1:`port` accepts a connection (not merely a TCP connect)."""
    try:
        with psycopg.connect(admin_conninfo(port)):
            return True
    except psycopg.OperationalError:
        # Refused, or "the database system is starting up": not ready yet.
        return False


def start_postgres(
    data_dir: Path,
    port: int = 0,
    *,
    fast: bool = False,
    bindir: Path | None = None,
    database: str = DEFAULT_DATABASE,
) -> ServerProcess:
    """Start PostgreSQL on 127.0.0.1:`port` (0: a free port), creating `database`; return once it answers.

    `data_dir` is initialised when empty and must not hold anything but a PostgreSQL cluster; the log
    and the socket folder go beside it. fsync stays on by default: durability is the product.
    `fast=True` (tests) turns off what protects only against an OS crash or power loss: fsync and
    full-page writes. `synchronous_commit` stays on even then, so a COMMIT that returned survives a
    SIGKILL of the server, which is exactly what the bridge's fault tests check.
    """
    port = claim_port(port, "postgres")
    bindir = postgres_bindir(bindir)
    user = POSTGRES_USER if running_as_root() else None
    data_dir = data_dir.absolute()
    socket_dir = data_dir.parent / "sockets"
    socket_path = socket_dir / f".s.PGSQL.{port}"
    if len(str(socket_path)) > SOCKET_PATH_MAX_CHARS:
        raise ServerStartError(
            f"socket path {socket_path} is longer than {SOCKET_PATH_MAX_CHARS} characters: choose a shorter data folder"
        )
    for folder in (data_dir, socket_dir):
        give_dir_to(folder, POSTGRES_USER)
        if user:
            check_enterable(folder, user)
    data_dir.chmod(0o700)  # postgres refuses a data folder that others can read
    if not (data_dir / "PG_VERSION").exists():
        _initdb(bindir, data_dir, user)
    durability = ("fsync=off", "full_page_writes=off") if fast else ("fsync=on", "full_page_writes=on")
    settings = (
        f"listen_addresses={LOOPBACK}",
        "max_connections=200",
        "shared_buffers=256MB",
        "synchronous_commit=on",
        *durability,
    )
    argv = [str(bindir / "postgres"), "-D", str(data_dir), "-p", str(port), "-k", str(socket_dir)]
    for setting in settings:
        argv += ["-c", setting]
    server = ServerProcess.start(
        "postgres",
        url=f"postgresql://{POSTGRES_USER}@{LOOPBACK}:{port}/{database}",
        port=port,
        data_dir=data_dir,
        log_path=data_dir.parent / "postgres.log",
        spec=LaunchSpec(
            argv=argv,
            ready=lambda: postgres_answers(port),
            user=POSTGRES_USER,
            # "Fast" shutdown: SIGTERM ("smart") would wait for every client, even a leaked one.
            stop_signal=signal.SIGINT,
        ),
    )
    try:
        create_database(port, database)
    except BaseException:
        server.stop()
        raise
    return server


def create_database(port: int, name: str, *, template: str | None = None) -> bool:
    """Create database `name` (optionally from `template`) unless it exists; True when created."""
    with psycopg.connect(admin_conninfo(port), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        conn.execute(statement)
        return True


def _initdb(bindir: Path, data_dir: Path, user: str | None) -> None:
    if any(data_dir.iterdir()):
        raise ServerStartError(
            f"{data_dir} is neither empty nor a PostgreSQL data folder (no PG_VERSION): refusing to use it"
        )
    argv = [
        str(bindir / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        POSTGRES_USER,
        # Trust is safe only because the server listens on loopback alone (tests, the local stack).
        "-A",
        "trust",
        "-E",
        "UTF8",
        # The C locale: the same sort order on every machine, and no dependence on installed locales.
        "--no-locale",
        # A data folder that is lost on a crash is simply made again.
        "--no-sync",
        "--no-instructions",
    ]
    result = subprocess.run(
        argv,
        capture_output=True,
        check=False,
        timeout=INITDB_TIMEOUT_S,
        user=user,
        group=user,
        extra_groups=[] if user else None,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace").strip()
        raise ServerStartError(f"initdb of {data_dir} failed with code {result.returncode}:\n{output}")
