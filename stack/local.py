"""The local stack behind `fleet up`: Mosquitto, Redis and PostgreSQL as child processes, then the
bridge, the rules engine, the API and a simulated fleet, with their URLs printed; Ctrl-C (or `fleet down`) stops it all.

On its first start (no alert rule in the database, not even a removed one) it adds the default rules
(`models.default_rules`). Unless told not to, two of the simulated trucks misbehave, chosen by the
simulator's seed (`firmware_sim.scenario.demo_plan`): one overheats from its first sample, one goes
offline for 11 minutes, so that the operator sees alerts within a minute.

A URL given in settings (`FLEETBRIDGE_MQTT_URL`, `_REDIS_URL`, `_DATABASE_URL`) names an existing
server, which is used instead of starting one. A configured port that is taken (a system Mosquitto on
1883 is common) is replaced by a free one, and the replacement is said; the ports chosen are kept in
the state folder and taken again at the next start (stack/ports.py). Once up, the stack describes
itself in `STATE_DIR/stack.json` for the other `fleet` commands (stack/state.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Final
from urllib.parse import quote

import psycopg
import redis

from bridge.stats import stats_key
from broker.agent import AgentConfig, BrokerAgent
from broker.certs import TlsFiles, init_certs
from broker.process import start_mosquitto
from broker.reload import AccountPaths
from config import Settings
from models.migrate import migrate
from models.partitions import maintain
from models.rule_store import add_default_rules
from stack.identity import ProcessIdentity
from stack.ports import PortBook, PortChange
from stack.postgres import start_postgres
from stack.process import ServerProcess, StackError, check_enterable, running_as_root
from stack.redis import start_redis
from stack.state import StackState, remove_state, write_state

CHILD_STOP_TIMEOUT_S: Final = 15.0
SERVER_DATA_FALLBACK: Final = Path("/var/tmp/fleetbridge")  # noqa: S108 - a fixed, documented place
MQTTS_PORT: Final = 8883
MQTTS_CERTIFICATES_PORT: Final = 8884
READY_TIMEOUT_S: Final = 60.0
READY_POLL_S: Final = 0.2
API_ACCOUNT: Final = "fleetbridge-api"  # the API's broker account (role api), for HTTP ingest
# The engine's broker account, to publish alert changes (role engine: write `alerts`, nothing else).
ENGINE_ACCOUNT: Final = "fleetbridge-engine-1"
AGENT_START_TIMEOUT_S: Final = 10.0

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class _Broker:
    """The broker the stack uses, and how the bridge and the simulator reach it."""

    mqtt_url: str
    bridge_url: str
    sim_url: str
    api_url: str | None = None  # the API's own account, for HTTP ingest (None: ingest answers 503)
    engine_url: str | None = None  # the engine's own account, to publish alerts (None: the shared URL)
    mqtts_url: str | None = None
    certificates_url: str | None = None  # where devices log in with their client certificate
    sim_credentials: Path | None = None
    sim_cert_dir: Path | None = None
    accounts_dir: Path | None = None  # where our broker reads its account files (None: not ours)


@dataclass
class LocalStack:
    """What `up` started, so that `down` stops exactly that, in reverse order."""

    settings: Settings
    say: Say
    base_env: dict[str, str] = field(default_factory=dict)  # the environment children inherit
    servers: list[ServerProcess] = field(default_factory=list)
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    started_broker: bool = False
    operator_login: str | None = None  # "user / password" of a demo admin made for this state folder
    port_changes: list[PortChange] = field(default_factory=list)  # ports that differ from the last start
    _ports: PortBook | None = None
    agent: BrokerAgent | None = None  # our broker's agent, when we started the broker

    def up(self, *, with_sim: bool = True, tls: bool = False, demo: bool = True) -> dict[str, str]:
        """Start everything; return the URLs. Raises `StackError` with what to do next.

        `tls`: our broker serves MQTT over TLS as well, and the bridge and simulator use it (the
        URLs then include "mqtts"); ignored, with a word, when the settings name an existing broker.
        `demo`: two simulated trucks misbehave (`firmware_sim.scenario.demo_plan`); without it all behave.
        """
        settings = self.settings
        state = settings.stack.state_dir.absolute()
        state.mkdir(parents=True, exist_ok=True)
        self._ports = PortBook(state, self.say)
        self.port_changes = self._ports.changes
        server_dir = _server_dir(state, self.say)
        redis_url = settings.redis.url or self._start(
            "Redis",
            lambda port: start_redis(server_dir / "redis", port),
            self._port("redis", settings.stack.redis_port, "Anything given the stack's Redis URL"),
        )
        database_url = settings.database.url or self._start(
            "PostgreSQL",
            lambda port: start_postgres(server_dir / "postgres" / "data", port),
            self._port("postgres", settings.stack.postgres_port, "Anything given the stack's database URL"),
        )
        self.say("applying database migrations")
        with psycopg.connect(database_url, autocommit=True) as conn:
            applied = migrate(conn, retention_days=settings.database.retention_days)
            maintain(
                conn,
                now=datetime.now(UTC),
                ahead_days=settings.database.partitions_ahead_days,
                retention_days=settings.database.retention_days,
            )
            defaults = add_default_rules(conn, "fleet up", first_start=True)
        self.say(f"schema up to date ({len(applied)} migrations applied now)")
        if defaults:
            names = ", ".join(rule["name"] for rule in defaults)
            self.say(f"first start: added the default alert rules ({names}); `fleet rules list` shows them")
        self.operator_login = _demo_operator(database_url, state)
        if settings.mqtt.url:
            if tls:
                self.say("FLEETBRIDGE_MQTT_URL names an existing broker: --tls applies only to a broker we start")
            broker = _Broker(settings.mqtt.url, bridge_url=settings.mqtt.url, sim_url=settings.mqtt.url)
        else:
            broker = self._own_broker(database_url, server_dir, state, tls=tls)
        api_port = self._port(
            "api", settings.api.port, "Operator UI bookmarks, API clients and integrators calling the REST API"
        )
        env = _child_env(self.base_env, settings, broker.bridge_url, redis_url, database_url)
        env["FLEETBRIDGE_API_PORT"] = str(api_port)
        env |= _api_env(settings, broker, state)
        logs = state / "logs"
        logs.mkdir(exist_ok=True)
        bridge_stats = stats_key(settings.mqtt.client_id)
        with redis.Redis.from_url(redis_url) as client:
            client.delete(bridge_stats)  # a previous run's counters must not pass for this bridge's
        self._spawn("bridge", [sys.executable, "-m", "bridge"], env, logs)
        self._spawn("engine", [sys.executable, "-m", "engine"], _engine_env(env, broker), logs)
        self._spawn("api", [sys.executable, "-m", "api"], env, logs)
        self._wait_ready(f"http://{settings.api.host}:{api_port}/readyz", redis_url, bridge_stats, logs)
        self.started_broker = not settings.mqtt.url
        self.urls = {
            "ui": f"http://{settings.api.host}:{api_port}/",
            "api": f"http://{settings.api.host}:{api_port}/api/v1/devices",
            "openapi": f"http://{settings.api.host}:{api_port}/schema/openapi.json",
            "mqtt": broker.mqtt_url,
            "redis": redis_url,
            "database": database_url,
            "logs": str(logs),
        }
        if broker.mqtts_url is not None:
            self.urls["mqtts"] = broker.mqtts_url
        if broker.certificates_url is not None:
            self.urls["mqtts_certificates"] = broker.certificates_url
        if with_sim and settings.sim.devices:
            self._start_sim(broker, env, state, demo=demo)
        write_state(state, self._state(broker))
        return self.urls

    def _start_sim(self, broker: _Broker, env: dict[str, str], state: Path, *, demo: bool) -> None:
        # A store directory in the state folder: a restarted stack's trucks continue their seq (same
        # boot) and their routes, and resend what the bridge had not confirmed.
        sim = [sys.executable, "-m", "firmware_sim", "--url", broker.sim_url, "--quiet"]
        sim += ["--store-dir", str(state / "sim-store")]
        if broker.sim_credentials is not None:
            sim += ["--credentials", str(broker.sim_credentials)]
        if broker.sim_cert_dir is not None:
            sim += ["--cert-dir", str(broker.sim_cert_dir)]
        if demo:
            sim += ["--demo"]
            self._say_demo()
        self._spawn("simulator", sim, env, state / "logs")

    def _say_demo(self) -> None:
        """Which simulated trucks misbehave, and how (the simulator picks the same ones by the same seed)."""
        from firmware_sim.fleet import device_ids
        from firmware_sim.scenario import demo_plan

        sim = self.settings.sim
        ids = device_ids("truck-", sim.devices)
        for index, played in sorted(demo_plan(sim.devices, sim.seed).items()):
            self.say(f"demo: {ids[index]} {played.describe()}")
        self.say("demo: with the default rules, alerts within a minute (`fleet up --no-demo`: every truck behaves)")

    def _state(self, broker: _Broker) -> StackState:
        """What other `fleet` commands need to find this stack (stack/state.py)."""
        processes = {}
        for name, pid in [(s.name, s.pid) for s in self.servers] + [(n, c.pid) for n, c in self.children]:
            identity = ProcessIdentity.of(pid) if pid is not None else None
            if identity is not None:
                processes[name] = identity
        return StackState(
            owner=ProcessIdentity.current(),
            urls=self.urls,
            processes=processes,
            accounts_dir=broker.accounts_dir,
            device_secrets=broker.sim_credentials,
            sim_url=broker.sim_url,
            sim_cert_dir=broker.sim_cert_dir,
        )

    def _wait_ready(self, readyz: str, redis_url: str, bridge_stats: str, logs: Path) -> None:
        """Wait until the API answers ready and the bridge has connected to the broker (its counters in
        Redis say so), so that what is published after `fleet up` says it runs is stored, not lost
        before the bridge's subscription exists. `StackError` naming the log of a child that exited."""
        self.say("waiting for the bridge and the API")
        deadline = time.monotonic() + READY_TIMEOUT_S
        api_ready = bridge_ready = False
        with redis.Redis.from_url(redis_url) as client:
            while not (api_ready and bridge_ready):
                if (exited := self.check()) is not None:
                    raise StackError(f"{exited} exited while starting: see {logs / f'{exited}.log'}")
                if time.monotonic() > deadline:
                    waiting = "the API" if not api_ready else "the bridge"
                    raise StackError(f"{waiting} was not ready after {READY_TIMEOUT_S:.0f} s: see the logs in {logs}")
                api_ready = api_ready or _answers(readyz)
                bridge_ready = bridge_ready or int(client.hget(bridge_stats, "connects") or 0) > 0
                time.sleep(READY_POLL_S)

    def check(self) -> str | None:
        """The name of a child that exited, or None while all run."""
        for name, child in self.children:
            if child.poll() is not None:
                return name
        return None

    def down(self) -> None:
        """Stop the children (simulator first), then the servers, newest first."""
        for name, child in reversed(self.children):
            if child.poll() is None:
                self.say(f"stopping {name}")
                child.send_signal(signal.SIGINT)
        for _, child in reversed(self.children):
            try:
                child.wait(CHILD_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self.agent is not None:
            self.agent.stop()
            self.agent = None
        for server in reversed(self.servers):
            self.say(f"stopping {server.name}")
            server.stop()
        remove_state(self.settings.stack.state_dir)

    def _own_broker(self, database_url: str, server_dir: Path, state: Path, *, tls: bool) -> _Broker:
        """Start our broker with accounts: per-device secrets for the simulated trucks, a service account
        for the bridge; nobody connects anonymously. With `tls`, the bridge uses TLS with its password and
        the simulated trucks log in with their client certificates on the certificate listener."""
        settings = self.settings
        accounts = _provision(database_url, server_dir / "accounts", state, settings)
        certs, tls_port, cert_port = self._tls(server_dir) if tls else (None, None, None)
        mqtt_url = self._start(
            "Mosquitto",
            lambda port: start_mosquitto(
                server_dir / "mosquitto",
                port,
                anonymous=False,
                password_file=accounts.paths.passwords,
                acl_file=accounts.paths.acl,
                tls=certs,
                tls_port=tls_port,
                cert_port=cert_port,
            ),
            self._port(
                "mqtt", settings.stack.mqtt_port, "Devices and integrators connecting to the broker (MQTT, plain)"
            ),
        )
        self._start_agent(database_url, accounts.paths.passwords.parent, self.servers[-1])
        self.say(
            f"MQTT accounts: bridge, API, engine and {settings.sim.devices} devices (secrets in {accounts.device_secrets})"
        )
        if certs is None:
            return _Broker(
                mqtt_url,
                bridge_url=_with_credentials(mqtt_url, settings.mqtt.client_id, accounts.bridge_secret),
                api_url=_with_credentials(mqtt_url, API_ACCOUNT, accounts.api_secret),
                engine_url=_with_credentials(mqtt_url, ENGINE_ACCOUNT, accounts.engine_secret),
                sim_url=mqtt_url,
                sim_credentials=accounts.device_secrets,
                accounts_dir=accounts.paths.passwords.parent,
            )
        trust = f"?cafile={quote(str(certs.ca_file), safe='/')}"
        mqtts_url = f"mqtts://127.0.0.1:{tls_port}{trust}"
        certificates_url = f"mqtts://127.0.0.1:{cert_port}{trust}"
        self.say(f"Mosquitto serves MQTT over TLS at {mqtts_url}, certificate logins at {certificates_url}")
        return _Broker(
            mqtt_url,
            mqtts_url=mqtts_url,
            certificates_url=certificates_url,
            bridge_url=_with_credentials(mqtts_url, settings.mqtt.client_id, accounts.bridge_secret),
            api_url=_with_credentials(mqtts_url, API_ACCOUNT, accounts.api_secret),
            engine_url=_with_credentials(mqtts_url, ENGINE_ACCOUNT, accounts.engine_secret),
            sim_url=certificates_url,
            sim_cert_dir=certs.ca_file.parent / "devices",
            accounts_dir=accounts.paths.passwords.parent,
        )

    def _start_agent(self, database_url: str, accounts_dir: Path, mosquitto: ServerProcess) -> None:
        """The broker agent of our Mosquitto, in this process: an account change made anywhere (the API,
        `fleet devices ...` from any shell) reaches the broker within a moment."""
        assert mosquitto.pid is not None
        agent = BrokerAgent(AgentConfig(database_url, accounts_dir, broker_pid=mosquitto.pid)).start()
        self.agent = agent
        deadline = time.monotonic() + AGENT_START_TIMEOUT_S
        while agent.applied_revision is None:
            if time.monotonic() > deadline:
                raise StackError(
                    f"the broker agent did not apply the accounts within {AGENT_START_TIMEOUT_S:g} s: see the log above"
                )
            time.sleep(0.05)
        self.say(f"broker agent {agent.config.agent_name} applies account changes to Mosquitto (pid {mosquitto.pid})")

    def _tls(self, server_dir: Path) -> tuple[TlsFiles, int, int]:
        """The development certificates (those of `fleet certs init`, made if missing, and one per simulated
        truck) and the ports for TLS with passwords and TLS with certificates."""
        from firmware_sim.fleet import device_ids

        folder = server_dir / "certs"
        certs = init_certs(folder, tuple(device_ids("truck-", self.settings.sim.devices)))
        self.say(f"TLS certificates in {folder} (trust {certs.ca_file}; trucks' certificates in {folder}/devices)")
        tls_port = self._port("mqtts", MQTTS_PORT, "Devices and integrators connecting over TLS with passwords")
        cert_port = self._port(
            "mqtts_certificates", MQTTS_CERTIFICATES_PORT, "Devices logging in with client certificates"
        )
        return certs, tls_port, cert_port

    def _port(self, name: str, configured: int, reconfigure: str) -> int:
        """The port for `name`: the one of the last start while free (stack/ports.py)."""
        assert self._ports is not None  # made at the start of `up`
        return self._ports.pick(name, configured, reconfigure)

    def _start(self, label: str, start: Callable[[int], ServerProcess], port: int) -> str:
        self.say(f"starting {label}")
        server = start(port)
        self.servers.append(server)
        self.say(f"{label} ready at {server.url} (log: {server.log_path})")
        return server.url

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        log = (logs / f"{name}.log").open("ab")
        self.say(f"starting {name} (log: {logs / f'{name}.log'})")
        # Own process group: a Ctrl-C in the terminal reaches `fleet up`, which stops children in order.
        child = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.children.append((name, child))


DEMO_ADMIN: Final = "admin"


def _kept_secret(path: Path, size: int = 48) -> str:
    """A random secret stored (0600) in `path`, made on first use."""
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(size)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret


def _demo_operator(database_url: str, state: Path) -> str | None:
    """Make an admin for the demo when the database has no operator yet; its password is kept in the state folder.

    None when operators exist already: they sign in with their own accounts (`fleet users add`).
    """
    from api.accounts.admin import add_user
    from api.accounts.roles import Role

    password_file = state / "admin-password"
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM users").fetchone()
    if row is not None and row[0] > 0:
        return f"{DEMO_ADMIN} / {password_file.read_text().strip()}" if password_file.exists() else None
    password = _kept_secret(password_file, size=12)
    add_user(database_url, DEMO_ADMIN, Role.ADMIN, password)
    return f"{DEMO_ADMIN} / {password}"


@dataclass(frozen=True, slots=True)
class _Accounts:
    paths: AccountPaths
    bridge_secret: str
    api_secret: str
    engine_secret: str
    device_secrets: Path


def _provision(database_url: str, accounts_dir: Path, state: Path, settings: Settings) -> _Accounts:
    """Accounts for the local broker: the bridge's, and one per simulated truck (new secrets each start).

    The device secrets go to a 0600 CSV in the state folder, which the simulator reads.
    """
    from broker.accounts import AccountError, DeviceSpec, add_service_account, import_devices, render_files, rotate
    from broker.acl import Role
    from broker.reload import write_files
    from firmware_sim.fleet import device_ids

    ids = device_ids("truck-", settings.sim.devices)
    with psycopg.connect(database_url, autocommit=True) as conn:
        bridge = add_service_account(conn, Role.BRIDGE, settings.mqtt.client_id, rotate_existing=True)
        # The API's own account: it publishes HTTP-ingested telemetry for devices. Its user name is its
        # client id at the broker (use_username_as_clientid), so a second API instance needs another.
        api = add_service_account(conn, Role.API, API_ACCOUNT, rotate_existing=True)
        engine = add_service_account(conn, Role.ENGINE, ENGINE_ACCOUNT, rotate_existing=True)
        rows = conn.execute("SELECT username FROM mqtt_accounts WHERE username = ANY(%s)", (ids,)).fetchall()
        existing = {row[0] for row in rows}
        credentials = import_devices(conn, [DeviceSpec(i) for i in ids if i not in existing])
        try:
            credentials += [rotate(conn, i, roles=[Role.DEVICE]) for i in sorted(existing)]
        except AccountError as exc:
            raise StackError(
                f"cannot give the simulated trucks new secrets: {exc}; reinstate the truck with "
                "`fleet devices rotate ID --reinstate`, or start with another --state-dir"
            ) from exc
        paths = write_files(accounts_dir, render_files(conn))
    secrets_file = state / "device-secrets.csv"
    secrets_file.unlink(missing_ok=True)
    secrets_file.touch(mode=0o600)
    secrets_file.write_text("id,secret\n" + "".join(f"{c.username},{c.secret}\n" for c in credentials))
    return _Accounts(paths, bridge.secret, api.secret, engine.secret, secrets_file)


def _engine_env(env: dict[str, str], broker: _Broker) -> dict[str, str]:
    """The engine's environment: the shared one, its instance name, and its own broker account if ours."""
    engine = env | {"FLEETBRIDGE_ENGINE_INSTANCE": "engine-1"}
    if broker.engine_url is not None:
        engine["FLEETBRIDGE_MQTT_URL"] = broker.engine_url
    return engine


def _api_env(settings: Settings, broker: _Broker, state: Path) -> dict[str, str]:
    """What the stack's API is given beyond the shared settings, where the user set nothing else."""
    env: dict[str, str] = {}
    if broker.api_url is not None and not settings.api.mqtt_url:
        env["FLEETBRIDGE_API_MQTT_URL"] = broker.api_url  # HTTP ingest publishes with it
    if not settings.api.jwt_secret:
        # One secret for the stack's API, kept across restarts so signed-in pages stay signed in.
        env["FLEETBRIDGE_API_JWT_SECRET"] = _kept_secret(state / "jwt-secret")
    return env


def _answers(url: str) -> bool:
    """True when `url` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http:// URL
            return bool(response.status == HTTPStatus.OK)
    except (OSError, ValueError):
        return False


def _with_credentials(url: str, username: str, secret: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{quote(username, safe='')}:{quote(secret, safe='')}@{rest}"


def _server_dir(state: Path, say: Say) -> Path:
    """Where server data goes: the state folder, unless the server users cannot enter it (e.g. /root)."""
    if not running_as_root():
        return state
    try:
        for user in ("postgres", "mosquitto"):
            check_enterable(state, user)
    except StackError:
        digest = hashlib.sha256(str(state).encode()).hexdigest()[:12]
        fallback = SERVER_DATA_FALLBACK / digest
        fallback.mkdir(parents=True, exist_ok=True)
        for folder in (SERVER_DATA_FALLBACK, fallback):
            folder.chmod(0o755)
        say(f"{state} is not reachable by the postgres and mosquitto users: server data goes to {fallback}")
        return fallback
    return state


def _child_env(
    base: dict[str, str], settings: Settings, mqtt_url: str, redis_url: str, database_url: str
) -> dict[str, str]:
    # Children get every other setting as given (FLEETBRIDGE_CONFIG included); the stack fixes the rest.
    env = dict(base)
    env.update(
        {
            "FLEETBRIDGE_MQTT_URL": mqtt_url,
            "FLEETBRIDGE_REDIS_URL": redis_url,
            "FLEETBRIDGE_DATABASE_URL": database_url,
            "FLEETBRIDGE_API_HOST": settings.api.host,
            "FLEETBRIDGE_SIM_DEVICES": str(settings.sim.devices),
            "FLEETBRIDGE_SIM_RATE_HZ": str(settings.sim.rate_hz),
            "FLEETBRIDGE_SIM_SEED": str(settings.sim.seed),
        }
    )
    return env


def with_state_dir(settings: Settings, state_dir: Path | None) -> Settings:
    """`settings` with another state folder, when one is given on the command line."""
    if state_dir is None:
        return settings
    return dataclasses.replace(settings, stack=dataclasses.replace(settings.stack, state_dir=state_dir))
