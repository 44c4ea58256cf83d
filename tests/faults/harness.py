"""One fault run through the real stack: private servers, a proxy, bridge processes, a simulated fleet.

`FaultRig` starts everything a run kills, under a folder of its own (never the tests' shared servers):
Mosquitto (persistence on, as in production), Redis (no persistence: a restart comes back empty) and
PostgreSQL, a `python -m bridge` child, and a fleet of paho devices whose links go through
`stack.netproxy` proxies — one for the fleet, one of its own for the last device, whose link a scenario
can cut alone; the bridge reaches PostgreSQL through a third. `run_fault` drives one scenario on a rig:

    steady load `before_s` → the fault (`Fault.inject`, which returns when the fault has ended) →
    load goes on `after_s` → the fleet stops → wait until every device's store is empty → account.

Meanwhile a monitor thread polls PostgreSQL every `MONITOR_INTERVAL_S` for the recovery figures: from
the end of the fault to the first commit after it, and to the moment every sample generated before the
fault ended is stored (the backlog drained). Figures go to `FaultResult`; the accounting to `Tally`.

`bench/faults.py` runs the same scenarios with long outages and higher rates; the test module runs
them with the small CI defaults of `FaultParams`, which environment variables override
(`FLEETBRIDGE_FAULTS_<FIELD>`, e.g. `FLEETBRIDGE_FAULTS_OUTAGE_S=30`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self

import psycopg
import redis

from bridge.rebuild import MARKER_KEY
from bridge.stats import stats_key
from config import Settings, load_settings
from firmware_sim.address import parse_broker_url
from firmware_sim.device import Device, DeviceOptions
from firmware_sim.fleet import Fleet, FleetOptions
from stack.netproxy import Mode, ProxyThread
from stack.postgres import POSTGRES_USER, postgres_bindir
from stack.process import LOOPBACK, ServerProcess, running_as_root
from stack.servers import start_servers
from tests.faults.accounting import DeviceRecord, Row, Tally, tally
from tests.integration.bridge.conftest import bridge_env

log = logging.getLogger(__name__)

PARAMS_PREFIX: Final = "FLEETBRIDGE_FAULTS_"
DEVICE_PREFIX: Final = "fault-"
BRIDGE_ID: Final = "faults-bridge"
MONITOR_INTERVAL_S: Final = 0.1
BRIDGE_START_TIMEOUT_S: Final = 30.0
CONNECT_TIMEOUT_S: Final = 30.0
PG_CTL_TIMEOUT_S: Final = 30.0
LINK_LATENCY_S: Final = 0.25
LINK_IN_FLIGHT: Final = 5  # messages awaiting PUBACK when the link is cut
DATABASE_LATENCY_S: Final = 0.05
DATABASE_RESET_EVERY_S: Final = 0.4
# A stall: every chunk held this long, i.e. past the end of any run.
STALL_S: Final = 3600.0
# The bridge gives up on a silent batch write after this (production default 60 s), so that a CI-sized
# stall is noticed within it.
BRIDGE_WRITE_TIMEOUT_S: Final = 2.0
# psycopg, interrupted in a query, first tries to cancel it on the server (5 s) and waits for the end of
# the query (5 s more) before it gives up.
PSYCOPG_CANCEL_S: Final = 10.0
STALL_NOTICE_SLACK_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class FaultParams:
    """Sizes and durations of a run. The defaults are CI's: tens of seconds per scenario."""

    devices: int = 20
    rate_hz: float = 20.0  # samples per second per device
    before_s: float = 3.0  # steady load before the fault
    outage_s: float = 4.0  # how long a server stays down or a link stays cut
    after_s: float = 3.0  # load goes on after the fault ended
    kills: int = 5  # bridge SIGKILLs in the kill scenario
    kill_every_s: float = 1.5  # ... one this often, each followed by a restart at once
    persist_timeout_s: float = 2.0  # devices resend what `persisted` has not confirmed this long after PUBACK
    drain_max_s: float = 90.0  # how long the devices get to empty their stores at the end

    @classmethod
    def from_env(cls, env: Mapping[str, str], **defaults: float) -> Self:
        """The defaults (or `defaults`), each overridden by `FLEETBRIDGE_FAULTS_<FIELD>` when set."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(PARAMS_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = int(raw) if f.type == "int" else float(raw)
            elif f.name in defaults:
                values[f.name] = defaults[f.name]
        return cls(**values)


class Fault(Protocol):
    """One kind of fault: `inject` breaks something, waits, repairs it, and returns when it has ended."""

    name: str
    description: str

    def inject(self, rig: FaultRig, params: FaultParams) -> str:
        """Run the fault; return a note for the table (e.g. how many kills)."""
        ...


@dataclass
class FaultResult:
    """One row of the fault table."""

    scenario: str
    description: str
    params: FaultParams
    tally: Tally
    fault_s: float  # from the start of the fault to its end
    first_commit_s: float | None  # end of the fault -> first row committed after it
    drained_s: float | None  # end of the fault -> every sample generated before it stored
    committed_during_fault: int | None  # rows committed while the fault lasted (None: database unreadable)
    note: str = ""

    def row(self) -> str:
        t = self.tally
        return (
            f"| {self.scenario} | {self.description} | {t.generated:,} | {t.acknowledged:,} | {t.stored:,} "
            f"| {t.lost} | {t.duplicated} | {_seconds(self.first_commit_s)} | {_seconds(self.drained_s)} "
            f"| {self.note} |"
        )


TABLE_HEAD: Final = (
    "| scenario | fault | generated | acknowledged | stored | lost | duplicated | first commit after | drained after | notes |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


@dataclass
class _Monitor:
    """Polls the database for rows committed; after the fault, also for the backlog generated before it."""

    database_url: str
    rows: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, rows) when readable
    fault_end: float | None = None
    targets: list[tuple[str, int]] = field(default_factory=list)  # device, next seq at the fault's end
    drained_at: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fault-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def rows_at(self, moment: float) -> int | None:
        """The last row count read at or before `moment`."""
        before = [n for t, n in self.rows if t <= moment]
        return before[-1] if before else None

    def first_commit_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first reading that shows a row more than the first reading after it.

        Counted from the first reading *after* `moment`, not the last before: when the database was down,
        rows committed just before it went away must not pass for the first commit after its return.
        """
        after = [(t, n) for t, n in self.rows if t >= moment]
        if not after:
            return None
        baseline = after[0][1]
        return next((t - moment for t, n in after[1:] if n > baseline), None)

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.wait(MONITOR_INTERVAL_S):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=1)
                row = conn.execute("SELECT count(*) FROM telemetry").fetchone()
                self.rows.append((time.monotonic(), int(row[0]) if row else 0))
                if self.fault_end is not None and self.drained_at is None and self._drained(conn):
                    self.drained_at = time.monotonic()
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _drained(self, conn: psycopg.Connection[Any]) -> bool:
        devices = [d for d, _ in self.targets]
        upto = [n for _, n in self.targets]
        row = conn.execute(
            "SELECT count(DISTINCT (t.device_id, t.seq)) FROM telemetry t"
            " JOIN unnest(%s::text[], %s::bigint[]) AS g(device_id, upto)"
            " ON t.device_id = g.device_id AND t.seq < g.upto",
            (devices, upto),
        ).fetchone()
        return row is not None and row[0] >= sum(upto)


class FaultRig:
    """Private servers, proxies, bridge processes and a fleet for one fault run (a context manager)."""

    def __init__(self, base: Path, params: FaultParams) -> None:
        self.base = base
        self.params = params
        self.servers: list[ServerProcess] = []
        self.bridges: list[subprocess.Popen[bytes]] = []
        self.proxies: list[ProxyThread] = []
        self.fleets: list[Fleet] = []
        self._runners: list[threading.Thread] = []
        self.bridge_starts = 0

    def __enter__(self) -> Self:
        try:
            self.mosquitto, self.redis, self.postgres = start_servers(self.base, self.servers)
            self.settings = self._settings()
            self.fleet_proxy = self._proxy(self.mosquitto)
            self.victim_proxy = self._proxy(self.mosquitto)
            # The bridge reaches PostgreSQL through a proxy too, so that its connections can be reset.
            self.database_proxy = self._proxy(self.postgres)
            self.start_bridge()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- parts ---------------------------------------------------------------------------------------

    def _settings(self) -> Settings:
        return load_settings(
            {
                "FLEETBRIDGE_MQTT_URL": self.mosquitto.url,
                "FLEETBRIDGE_MQTT_CLIENT_ID": BRIDGE_ID,
                "FLEETBRIDGE_REDIS_URL": self.redis.url,
                "FLEETBRIDGE_DATABASE_URL": self.postgres.url,
            }
        )

    def _proxy(self, server: ServerProcess) -> ProxyThread:
        proxy = ProxyThread(LOOPBACK, server.port)
        proxy.start()
        self.proxies.append(proxy)
        return proxy

    def start_bridge(self) -> subprocess.Popen[bytes]:
        """Start `python -m bridge` (always the same client id, so it resumes its session)."""
        logs = self.base / "logs"
        logs.mkdir(exist_ok=True)
        self.bridge_starts += 1
        with (logs / f"bridge-{self.bridge_starts}.log").open("wb") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "bridge"], env=self._bridge_env(), stdout=out, stderr=subprocess.STDOUT
            )
        self.bridges.append(child)
        return child

    def _bridge_env(self) -> dict[str, str]:
        database_url = self.postgres.url.replace(f":{self.postgres.port}/", f":{self.database_proxy.port}/")
        return bridge_env(
            self.settings,
            FLEETBRIDGE_DATABASE_URL=database_url,
            FLEETBRIDGE_BRIDGE_WRITE_TIMEOUT_S=str(BRIDGE_WRITE_TIMEOUT_S),
        )

    def bridge_stats(self) -> dict[str, str]:
        """The counters the running bridge publishes in Redis (empty while Redis is down)."""
        client = redis.Redis.from_url(self.redis.url, decode_responses=True, socket_timeout=1)
        try:
            return {str(k): str(v) for k, v in client.hgetall(stats_key(BRIDGE_ID)).items()}
        except redis.RedisError:
            return {}
        finally:
            client.close()

    def wait_bridge_connected(self, child: subprocess.Popen[bytes]) -> None:
        """Wait until `child` reports (in Redis) that it connected to the broker."""
        deadline = time.monotonic() + BRIDGE_START_TIMEOUT_S
        while True:
            stats = self.bridge_stats()
            if stats.get("pid") == str(child.pid) and int(stats.get("connects", "0")) >= 1:
                return
            if child.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"bridge {child.pid} did not connect; logs in {self.base / 'logs'}")
            time.sleep(0.05)

    @property
    def bridge(self) -> subprocess.Popen[bytes]:
        """The bridge started last."""
        return self.bridges[-1]

    def kill_bridge(self) -> None:
        """SIGKILL the current bridge: no flush, no DISCONNECT, nothing acknowledged that was not committed."""
        self.bridge.send_signal(signal.SIGKILL)
        self.bridge.wait(10)

    def stop_postgres_immediately(self) -> None:
        """`pg_ctl stop -m immediate`: the postmaster and every backend quit at once, no checkpoint."""
        argv = [
            str(postgres_bindir() / "pg_ctl"),
            "stop",
            "-D",
            str(self.postgres.data_dir),
            "-m",
            "immediate",
            "-w",
        ]
        user = POSTGRES_USER if running_as_root() else None
        subprocess.run(argv, check=True, capture_output=True, timeout=PG_CTL_TIMEOUT_S, user=user, group=user)

    def cache_marker(self) -> str | None:
        """The bridge's state-cache marker in Redis (None when missing or Redis is down)."""
        client = redis.Redis.from_url(self.redis.url, decode_responses=True, socket_timeout=1)
        try:
            value = client.get(MARKER_KEY)
            return None if value is None else str(value)
        except redis.RedisError:
            return None
        finally:
            client.close()

    # -- the fleet -----------------------------------------------------------------------------------

    def start_fleet(self) -> None:
        """All devices but the last through the fleet proxy, the last through a proxy of its own."""
        p = self.params
        device = DeviceOptions(reconnect_min_s=1, reconnect_max_s=2, persist_timeout_s=p.persist_timeout_s)
        for proxy, count, first in (
            (self.fleet_proxy, p.devices - 1, 1),
            (self.victim_proxy, 1, p.devices),
        ):
            options = FleetOptions(
                devices=count, rate_hz=p.rate_hz, prefix=DEVICE_PREFIX, first_index=first, device=device, seed=1
            )
            fleet = Fleet(parse_broker_url(f"mqtt://{LOOPBACK}:{proxy.port}"), options)
            self.fleets.append(fleet)
            fleet.start()
        for fleet in self.fleets:
            if not fleet.wait_connected(CONNECT_TIMEOUT_S):
                raise AssertionError("the fleet did not connect")
        for fleet in self.fleets:
            runner = threading.Thread(target=fleet.run, name="fleet-run", daemon=True)
            runner.start()
            self._runners.append(runner)

    @property
    def devices(self) -> list[Device]:
        return [d for fleet in self.fleets for d in fleet.devices]

    @property
    def victim(self) -> Device:
        """The device behind its own proxy."""
        return self.fleets[-1].devices[0]

    def stop_fleet(self) -> None:
        for fleet in self.fleets:
            fleet.stop()
        for runner in self._runners:
            runner.join(30)

    def records(self) -> list[DeviceRecord]:
        """What every device itself knows now."""
        records = []
        for device in self.devices:
            stats = device.stats()
            records.append(
                DeviceRecord(
                    device_id=device.device_id,
                    boot=device.boot,
                    first_seq=0,  # in-memory stores: every run starts at seq 0
                    next_seq=device.next_seq,
                    acknowledged=device.acknowledged(),
                    persisted=device.persisted(),
                    held=stats.buffered,
                    dropped=stats.dropped,
                    refused=stats.refused + stats.rejected,
                )
            )
        return records

    def rows(self) -> list[Row]:
        with psycopg.connect(self.postgres.url) as conn:
            return conn.execute(
                "SELECT device_id, boot, seq, ts FROM telemetry WHERE starts_with(device_id, %s)", (DEVICE_PREFIX,)
            ).fetchall()

    def close(self) -> None:
        for fleet in self.fleets:
            fleet.stop()
        for runner in self._runners:
            runner.join(10)
        for fleet in self.fleets:
            fleet.close(timeout_s=1.0)
        for child in self.bridges:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        for proxy in self.proxies:
            proxy.close()
        for server in reversed(self.servers):
            server.stop()


def run_fault(rig: FaultRig, fault: Fault, *, progress: Callable[[str], None] = lambda _: None) -> FaultResult:
    """Load, fault, load, drain, account: one row of the fault table."""
    p = rig.params
    rig.wait_bridge_connected(rig.bridge)
    monitor = _Monitor(rig.postgres.url)
    monitor.start()
    try:
        rig.start_fleet()
        progress(f"{fault.name}: {p.devices} devices at {p.rate_hz:g} samples/s each; steady for {p.before_s:g} s")
        time.sleep(p.before_s)
        progress(f"{fault.name}: injecting ({fault.description})")
        started = time.monotonic()
        note = fault.inject(rig, p)
        ended = time.monotonic()
        monitor.targets = [(d.device_id, d.next_seq) for d in rig.devices]
        monitor.fault_end = ended
        progress(f"{fault.name}: fault over after {ended - started:.1f} s; load goes on {p.after_s:g} s")
        time.sleep(p.after_s)
        rig.stop_fleet()
        progress(f"{fault.name}: fleet stopped; waiting for every store to empty")
        for fleet in rig.fleets:
            fleet.wait_persisted(p.drain_max_s)
        deadline = time.monotonic() + p.drain_max_s
        while monitor.drained_at is None and time.monotonic() < deadline:
            time.sleep(MONITOR_INTERVAL_S)
        result = tally(rig.records(), rig.rows())
    finally:
        monitor.stop()
    for child in rig.bridges[:-1]:
        assert child.returncode is not None  # every bridge but the last was killed on purpose
    if rig.bridge.poll() is not None:
        raise AssertionError(f"the bridge exited by itself (code {rig.bridge.returncode}); logs in {rig.base}")
    return FaultResult(
        scenario=fault.name,
        description=fault.description,
        params=p,
        tally=result,
        fault_s=ended - started,
        first_commit_s=monitor.first_commit_after(ended),
        committed_during_fault=_difference(monitor.rows_at(ended), monitor.rows_at(started)),
        drained_s=None if monitor.drained_at is None else monitor.drained_at - ended,
        note=note,
    )


def _difference(later: int | None, earlier: int | None) -> int | None:
    return None if later is None or earlier is None else later - earlier


# -- the faults ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BridgeKills:
    """The bridge SIGKILLed `kills` times, each time restarted at once under the same client id."""

    name: str = "bridge-sigkill"
    description: str = "bridge SIGKILLed and restarted, repeatedly"

    def inject(self, rig: FaultRig, params: FaultParams) -> str:
        for _ in range(params.kills):
            rig.kill_bridge()
            rig.start_bridge()
            time.sleep(params.kill_every_s)
        rig.wait_bridge_connected(rig.bridge)
        return f"{params.kills} kills, {params.kill_every_s:g} s apart"


@dataclass(frozen=True, slots=True)
class ServerCrash:
    """A server crashed by `crash`, left down `outage_s`, then started again on the same port and data."""

    name: str
    description: str
    crash: Callable[[FaultRig], None]
    server: Callable[[FaultRig], ServerProcess]

    def inject(self, rig: FaultRig, params: FaultParams) -> str:
        self.crash(rig)
        time.sleep(params.outage_s)
        self.server(rig).restart()
        return f"down {params.outage_s:g} s"


@dataclass(frozen=True, slots=True)
class RedisRestartEmpty:
    """Redis stopped and started again without its data: the bridge rebuilds the state from PostgreSQL."""

    name: str = "redis-restart"
    description: str = "Redis stopped, restarted empty"

    def inject(self, rig: FaultRig, params: FaultParams) -> str:
        # The victim falls silent first: afterwards only the rebuild can give Redis its state.
        rig.fleets[-1].stop()
        rig.redis.stop()
        time.sleep(params.outage_s)
        rig.redis.restart()
        back = time.monotonic()
        deadline = back + 30
        while not (rig.cache_marker() or "").startswith("ready:"):
            if time.monotonic() > deadline:
                raise AssertionError("the bridge did not rebuild the state cache within 30 s")
            time.sleep(0.05)
        return f"down {params.outage_s:g} s; state rebuilt {time.monotonic() - back:.1f} s after restart"


@dataclass(frozen=True, slots=True)
class LinkCut:
    """One device's link slowed (so that a burst is in flight), reset by the proxy, refused, then restored."""

    name: str = "link-cut"
    description: str = "one device's link cut (RST) mid-burst, refused, restored"

    def inject(self, rig: FaultRig, params: FaultParams) -> str:
        victim = rig.victim
        # 250 ms each way: at 20 samples/s about ten messages wait for their PUBACK when the link dies.
        rig.victim_proxy.set_latency(LINK_LATENCY_S)
        deadline = time.monotonic() + 10
        while victim.in_flight < LINK_IN_FLIGHT and time.monotonic() < deadline:
            time.sleep(0.001)
        in_flight = victim.in_flight
        rig.victim_proxy.cut()
        rig.victim_proxy.set_mode(Mode.REFUSE)
        rig.victim_proxy.set_latency(0.0)
        time.sleep(params.outage_s)
        rig.victim_proxy.set_mode(Mode.FORWARD)
        return f"{in_flight} messages in flight at the cut; refused {params.outage_s:g} s"


@dataclass(frozen=True, slots=True)
class DatabaseLinkResets:
    """The bridge's PostgreSQL connections slowed and reset again and again: some die mid-transaction."""

    name: str = "database-link-reset"
    description: str = "the bridge's PostgreSQL links slowed and reset (RST) repeatedly"

    def inject(self, rig: FaultRig, params: FaultParams) -> str:
        # 50 ms each way stretches every transaction over several round trips (COPY, INSERT, COMMIT),
        # so that the resets land inside transactions, some between sending COMMIT and its answer.
        rig.database_proxy.set_latency(DATABASE_LATENCY_S)
        retries_before = int(rig.bridge_stats().get("sink_retries", "0"))
        resets = 0
        deadline = time.monotonic() + params.outage_s
        while time.monotonic() < deadline:
            time.sleep(DATABASE_RESET_EVERY_S)
            resets += rig.database_proxy.cut()
        rig.database_proxy.set_latency(0.0)
        failed = int(rig.bridge_stats().get("sink_retries", "0")) - retries_before
        return f"{resets} connections reset in {params.outage_s:g} s; {failed} batch attempts failed and were retried"


@dataclass(frozen=True, slots=True)
class DatabaseLinkStall:
    """The bridge's PostgreSQL link goes silent: bytes are taken and never delivered, nothing comes back,
    no error either (a peer that ACKs and never answers, packets dropped on the way)."""

    name: str = "database-link-stall"
    description: str = "the bridge's PostgreSQL links stall silently (no error, no answer)"

    def inject(self, rig: FaultRig, params: FaultParams) -> str:
        def timeouts() -> int:
            return int(rig.bridge_stats().get("sink_timeouts", "0"))

        before = timeouts()
        rig.database_proxy.set_latency(STALL_S)
        time.sleep(params.outage_s)
        # New connections pass again; the stalled ones stay stalled (nothing ends them but the bridge's
        # own timeout), so the batch written on one is only committed once the bridge gives up on it.
        rig.database_proxy.set_latency(0.0)
        ended = time.monotonic()
        deadline = ended + BRIDGE_WRITE_TIMEOUT_S + PSYCOPG_CANCEL_S + STALL_NOTICE_SLACK_S
        while timeouts() == before and time.monotonic() < deadline:
            time.sleep(0.1)
        noticed = time.monotonic() - ended
        return (
            f"stalled {params.outage_s:g} s; {timeouts() - before} batch write(s) timed out "
            f"({BRIDGE_WRITE_TIMEOUT_S:g} s) and were retried, noticed {noticed:.1f} s after the link came back"
        )


FAULTS: Final[tuple[Fault, ...]] = (
    BridgeKills(),
    # `pg_ctl -m immediate` is a crash: the postmaster and its backends quit at once, no checkpoint.
    ServerCrash(
        "postgres-immediate",
        "PostgreSQL `pg_ctl stop -m immediate`, then started",
        FaultRig.stop_postgres_immediately,
        lambda rig: rig.postgres,
    ),
    RedisRestartEmpty(),
    # SIGKILL: Mosquitto keeps only its last autosave (every 10 s in mosquitto.conf).
    ServerCrash(
        "mosquitto-sigkill",
        "Mosquitto SIGKILLed, restarted with its persistence",
        lambda rig: rig.mosquitto.kill(),
        lambda rig: rig.mosquitto,
    ),
    LinkCut(),
    DatabaseLinkResets(),
    DatabaseLinkStall(),
)


def params_from_environment(**defaults: float) -> FaultParams:
    """`FaultParams` for this process: the defaults overridden by `FLEETBRIDGE_FAULTS_*`."""
    return FaultParams.from_env(os.environ, **defaults)
