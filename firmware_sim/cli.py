"""`python -m firmware_sim` and `fleet sim`: run a simulated fleet (or replay a trip) against a broker.

Progress (published and acknowledged per second) goes to stderr once a second, a summary at the end:
the MQTT counters, then the store's (buffered, persisted, resent_unpersisted, dropped,
oldest_unpersisted_age_s; see `firmware_sim.device.DeviceStats`).

At the end the simulator waits up to `--drain` seconds for the broker's acknowledgements, and, when a
bridge answered on `persisted` during the run, for the stores to drain too. Stopped by Ctrl-C or SIGTERM,
it waits at most `SIGNAL_DRAIN_S` instead, so that a stop is prompt whatever the broker does. With `--store-dir`, what is
still unconfirmed stays on disk and goes out again on the next run with the same directory and ids.

`--scenario NAME` makes the first truck (or the first `--scenario-devices`) misbehave as
`firmware_sim.scenario` describes; `--demo` is `fleet up`'s: two trucks chosen by the seed, one overheating,
one going offline. A `geofence` scenario prints the fence its trucks will cross on stdout (GeoJSON, one
line each) before the run starts, for the operator to add.

Exit status: 0 when every sample was acknowledged, 1 when some were not (or were refused or dropped),
2 for bad arguments. `main()` reads no environment: defaults come from its arguments, which the
`__main__` module (or the `fleet` CLI) fills from settings, or from the running local stack. Without
`--url` and without such a default it refuses to start: it never guesses a broker (a guess of
localhost:1883 once published a fleet into a system Mosquitto).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

from config.settings import SimSettings
from firmware_sim.address import BrokerAddress, parse_broker_url
from firmware_sim.device import PERSIST_TIMEOUT_S, STORE_MAX_SAMPLES, Device, DeviceOptions, TlsOptions
from firmware_sim.errors import SimError
from firmware_sim.fleet import Fleet, FleetOptions, FleetStats, fds_needed
from firmware_sim.gateway import Gateway, GatewayOptions
from firmware_sim.replay import load_recording, plan_replay, play
from firmware_sim.scenario import SCENARIOS, Scenario, demo_plan, scenario
from firmware_sim.site import gateway_id
from firmware_sim.truck import READINGS_PER_SAMPLE
from models.telemetry import utcnow

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 1.0
NO_BROKER: Final = (
    "no broker to publish to: pass --url mqtt://[user[:password]@]host[:port] (or set FLEETBRIDGE_MQTT_URL)"
)
# After Ctrl-C or SIGTERM the operator wants the process gone: the drain and the devices' goodbye are
# cut to these, whatever `--drain` says (a second Ctrl-C ends it at once).
SIGNAL_DRAIN_S = 2.0
SIGNAL_CLOSE_S = 2.0


@dataclass(frozen=True, slots=True)
class SimTarget:
    """The broker to use when `--url` is not given, and the logins that go with it there."""

    url: str
    credentials: Path | None = None  # `id,secret` lines, the default of --credentials
    cert_dir: Path | None = None  # client certificates, the default of --cert-dir
    origin: str = ""  # where it came from, said at the start (e.g. "the local stack in .fleet")


def build_parser(
    defaults: SimSettings, default_url: str | None = None, *, prog: str = "python -m firmware_sim"
) -> argparse.ArgumentParser:
    """The command line; `defaults` supplies the fleet size, rate and seed, `default_url` the broker (None: --url is needed)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Simulated trucks publishing telemetry over MQTT (QoS 1), or a recorded trip replayed.",
    )
    parser.add_argument(
        "--url",
        default=default_url,
        help="broker, mqtt://[user[:password]@]host[:port] or mqtts://… (default: %(default)s)"
        if default_url
        else "broker, mqtt://[user[:password]@]host[:port] or mqtts://…",
    )
    parser.add_argument("--devices", type=_count, default=defaults.devices, help="devices (%(default)s)")
    parser.add_argument(
        "--rate",
        type=_non_negative,
        default=defaults.rate_hz,
        help="samples per second per device; 0: as fast as the broker acknowledges (%(default)s)",
    )
    parser.add_argument("--duration", type=_non_negative, help="stop after this many seconds")
    parser.add_argument("--count", type=_count, help="stop after this many samples per device")
    parser.add_argument("--batch", type=_positive_int, default=1, help="samples per message (%(default)s)")
    parser.add_argument("--prefix", default="truck-", help="device id prefix (%(default)s)")
    parser.add_argument("--first-index", type=_count, default=1, help="number of the first device (%(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="route and sensor seed (%(default)s)")
    parser.add_argument("--replay", type=Path, metavar="FILE", help="replay a recorded trip instead (see replay.py)")
    parser.add_argument("--speed", type=_non_negative, default=1.0, help="replay speed factor; 0: all at once (1)")
    parser.add_argument(
        "--original-time", action="store_true", help="replay with the recorded timestamps instead of re-basing to now"
    )
    parser.add_argument(
        "--max-inflight", type=_positive_int, default=100, help="unacknowledged messages per device (%(default)s)"
    )
    parser.add_argument(
        "--connect-timeout", type=_non_negative, default=10.0, help="wait this long for connections (%(default)s s)"
    )
    parser.add_argument(
        "--drain", type=_non_negative, default=10.0, help="at the end, wait this long for acks (%(default)s s)"
    )
    parser.add_argument(
        "--store-dir",
        type=Path,
        metavar="DIR",
        help="keep each device's unconfirmed samples, seq counter and place on its route in DIR/<id>.sqlite, "
        "across restarts (default: in memory, lost at exit; every run is a new boot)",
    )
    parser.add_argument(
        "--store-max-samples",
        type=_positive_int,
        default=STORE_MAX_SAMPLES,
        help="samples a device keeps until persisted; the oldest are dropped beyond (%(default)s)",
    )
    parser.add_argument(
        "--persist-timeout",
        type=_positive,
        default=PERSIST_TIMEOUT_S,
        help="resend samples the bridge has not confirmed this long after the broker acknowledged them (%(default)s s)",
    )
    parser.add_argument("--ca-file", help="CA bundle for mqtts:// (default: the system's)")
    parser.add_argument("--cert-file", help="client certificate for mqtts://")
    parser.add_argument("--key-file", help="client key for mqtts://")
    parser.add_argument(
        "--cert-dir",
        type=Path,
        metavar="DIR",
        help="per-device client certificates DIR/<id>.pem and .key (`fleet certs device ID`), the devices' login "
        "on the broker's certificate listener (mqtts://host:8884)",
    )
    parser.add_argument(
        "--credentials",
        type=Path,
        metavar="CSV",
        help="per-device secrets, lines `id,secret` as `fleet devices import` prints them",
    )
    parser.add_argument(
        "--no-events",
        action="store_true",
        help="publish telemetry only: no ignition on/off or harsh_braking events on fleet/v1/{id}/events",
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        help="make trucks misbehave (docs/rules.md#scenarios): overheat, fuel-theft, offline (Last Will), "
        "trip-with-stops, geofence (prints the fence it will cross)",
    )
    parser.add_argument(
        "--scenario-devices",
        type=_positive_int,
        default=1,
        metavar="N",
        help="how many trucks play the scenario, the first ones of the run (%(default)s)",
    )
    parser.add_argument("--scenario-at", type=_non_negative, metavar="S", help="seconds after the start when it begins")
    parser.add_argument(
        "--scenario-for",
        type=_non_negative,
        metavar="S",
        help="how long it lasts: overheat at its peak, fuel-theft and trip-with-stops parked, offline off the network",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="the demo of `fleet up`: one truck overheats from the start, another goes offline for 11 minutes "
        "(which two: by --seed)",
    )
    gateway = parser.add_argument_group("edge gateway (docs/gateways.md)")
    gateway.add_argument(
        "--gateway",
        action="store_true",
        help="run one site's gateway instead of trucks: it logs in as SITE-gw and publishes one-second windows "
        "of the site's sensors (SITE-vibration-1, …) as their telemetry",
    )
    gateway.add_argument("--site", help="the gateway's site (needed with --gateway)")
    gateway.add_argument(
        "--sensors-per-kind", type=_positive_int, default=1, help="sensors of each kind at the site (%(default)s)"
    )
    gateway.add_argument(
        "--link-kbps",
        type=_positive,
        help="the link's speed as configured, the gateway's first estimate (it measures the link from then on)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(
    argv: list[str] | None = None,
    *,
    defaults: SimSettings | None = None,
    target: SimTarget | None = None,
    no_target: str = NO_BROKER,
    prog: str = "python -m firmware_sim",
) -> int:
    """Run the simulator with command-line arguments `argv` (default: `sys.argv[1:]`); return the exit status.

    Without `--url` the broker (and the logins) come from `target`; with neither, the run is refused
    with `no_target`, which says what to do.
    """
    parser = build_parser(defaults or SimSettings(), prog=prog)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.url is None:
        if target is None:
            parser.error(no_target)
        args.url = target.url
        args.credentials = args.credentials or target.credentials
        args.cert_dir = args.cert_dir or target.cert_dir
        if target.origin:
            sys.stderr.write(f"fleet: publishing to {target.origin}\n")
    try:
        address = parse_broker_url(args.url)
    except SimError as exc:
        parser.error(str(exc))
    if args.cert_dir is not None and not address.tls:
        parser.error("--cert-dir needs an mqtts:// broker URL: certificates are presented in the TLS handshake")
    if args.replay is not None and (args.demo or args.scenario):
        parser.error("--scenario and --demo drive simulated trucks; a --replay plays its recording as it is")
    if args.demo and args.scenario:
        parser.error("--demo has scenarios of its own: give --demo or --scenario, not both")
    if args.scenario is None and (args.scenario_at is not None or args.scenario_for is not None):
        parser.error("--scenario-at and --scenario-for need a --scenario")
    if args.scenario is not None and args.scenario_devices > args.devices:
        parser.error(f"--scenario-devices {args.scenario_devices} is more than the {args.devices} --devices")
    _check_gateway_args(parser, args)
    device_options = DeviceOptions(
        tls=TlsOptions(args.ca_file, args.cert_file, args.key_file) if address.tls else None,
        max_inflight=args.max_inflight,
        store_dir=args.store_dir,
        store_max_samples=args.store_max_samples,
        persist_timeout_s=args.persist_timeout,
    )
    try:
        return _runner(args)(args, address, device_options)
    except SimError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        # Ctrl-C while connecting or draining (a run itself stops cleanly on it): the devices were closed
        # on the way out; a stop asked for is no fault, so no traceback.
        sys.stderr.write("interrupted\n")
        return 130


def read_credentials(path: Path) -> dict[str, str]:
    """`id,secret` lines (a header line `id,secret` is allowed); `SimError` names a bad line."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SimError(f"cannot read credentials {path}: {exc}") from exc
    found: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.strip() == "id,secret":
            continue
        device_id, comma, secret = line.partition(",")
        if not comma or not device_id or not secret:
            raise SimError(f"{path}:{number}: expected `id,secret`")
        found[device_id.strip()] = secret.strip()
    return found


def scenarios_of(args: argparse.Namespace) -> dict[int, Scenario]:
    """The misbehaving trucks the arguments ask for, by place in the run."""
    if args.demo:
        return demo_plan(args.devices, args.seed)
    if args.scenario is None:
        return {}
    played = scenario(args.scenario, start_s=args.scenario_at, for_s=args.scenario_for)
    return dict.fromkeys(range(args.scenario_devices), played)


def _simulate(args: argparse.Namespace, address: BrokerAddress, device_options: DeviceOptions) -> int:
    options = FleetOptions(
        devices=args.devices,
        rate_hz=args.rate or None,
        duration_s=args.duration,
        count=args.count,
        batch=args.batch,
        prefix=args.prefix,
        first_index=args.first_index,
        seed=args.seed,
        device=device_options,
        credentials=read_credentials(args.credentials) if args.credentials else {},
        cert_dir=args.cert_dir,
        events=not args.no_events,
        scenarios=scenarios_of(args),
    )
    _raise_fd_limit(fds_needed(options))
    fleet = Fleet(address, options)
    rate = f"{args.rate:g}/s per device" if args.rate else "as fast as acknowledged"
    sys.stderr.write(f"fleet: {options.devices} devices ({args.prefix}…) -> {address}, {rate}, batch {args.batch}\n")
    for truck in fleet.trucks:
        if truck.scenario is not None:
            sys.stderr.write(f"scenario: {truck.device_id} {truck.scenario.describe()}\n")
    fences = fleet.fences()
    for fence in fences:
        sys.stdout.write(json.dumps(fence, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    if fences:
        sys.stderr.write(
            "scenario: add the fence printed on stdout before the truck gets there, e.g. "
            '`curl -X POST $API/api/v1/geofences -H "Authorization: Bearer $TOKEN" '
            "-H 'Content-Type: application/json' -d @fence.json`\n"
        )
    signalled = threading.Event()
    fleet.start()
    try:
        if not fleet.wait_connected(args.connect_timeout):
            connected = fleet.stats().connected
            sys.stderr.write(f"warning: {connected}/{options.devices} devices connected; the rest keep retrying\n")
        return _drive(
            fleet.run,
            fleet.stop,
            stats=fleet.stats,
            wait_acked=fleet.wait_acked,
            wait_persisted=fleet.wait_persisted,
            args=args,
            signalled=signalled,
        )
    finally:
        fleet.close(timeout_s=SIGNAL_CLOSE_S if signalled.is_set() else 5.0)


def _runner(args: argparse.Namespace) -> Callable[[argparse.Namespace, BrokerAddress, DeviceOptions], int]:
    """What the arguments ask to run: a site's gateway, a replay, or the simulated fleet."""
    if args.gateway:
        return run_gateway
    return _replay if args.replay is not None else _simulate


def _check_gateway_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.gateway and not args.site:
        parser.error("--gateway needs --site")
    if args.gateway and (args.replay is not None or args.demo or args.scenario):
        parser.error("--gateway runs a site's sensors; --replay, --scenario and --demo drive trucks")
    if not args.gateway and (args.site or args.link_kbps is not None):
        parser.error("--site and --link-kbps are for --gateway")


def run_gateway(args: argparse.Namespace, address: BrokerAddress, device_options: DeviceOptions) -> int:
    """`--gateway`: run the site's gateway until --duration (or Ctrl-C/SIGTERM), then drain; 0 when the bridge
    confirmed every window. Of `device_options`, only the store's settings apply (read from `args`)."""
    password = None
    if args.credentials:
        password = read_credentials(args.credentials).get(gateway_id(args.site))
    options = GatewayOptions(
        site=args.site,
        sensors_per_kind=args.sensors_per_kind,
        seed=args.seed,
        password=password,
        store_dir=args.store_dir,
        store_max_samples=args.store_max_samples,
        persist_timeout_s=args.persist_timeout,
        link_kbps=args.link_kbps,
    )
    gateway = Gateway(address, options)
    sys.stderr.write(
        f"gateway: {gateway.device_id} for {len(gateway.sensors)} sensors -> {address}, quality {gateway.level.name}\n"
    )
    stop = threading.Event()
    gateway.start()
    try:
        with _sigterm_calls(stop.set):
            started = time.monotonic()
            try:
                while not stop.wait(PROGRESS_INTERVAL_S):
                    if not args.quiet:
                        sys.stderr.write(_gateway_line(gateway, time.monotonic() - started))
                    if args.duration is not None and time.monotonic() - started >= args.duration:
                        break
            except KeyboardInterrupt:
                sys.stderr.write("interrupted: stopping\n")
                stop.set()
        gateway.stop_sampling()
        drained = gateway.wait_persisted(min(args.drain, SIGNAL_DRAIN_S) if stop.is_set() else args.drain)
        final = gateway.stats()
        sys.stderr.write(
            f"summary: {final.windows} windows, published {final.published}, acked {final.acked} "
            f"({final.acked_bytes} bytes), persisted {final.persisted}, resent {final.resent}, "
            f"refused {final.refused}, dropped {final.dropped}, still stored {final.buffered}; "
            f"quality {' -> '.join(name for _, name in final.level_changes)}\n"
        )
        return 0 if drained and not final.refused and not final.dropped else 1
    finally:
        gateway.close(timeout_s=SIGNAL_CLOSE_S)


def _gateway_line(gateway: Gateway, t_s: float) -> str:
    stats = gateway.stats()
    return (
        f"{t_s:7.1f}s  {'connected' if stats.connected else 'offline'}  quality {stats.level}"
        f" (link ~{stats.estimate_bps / 1000:.0f} kbit/s)  windows {stats.windows}  acked {stats.acked}"
        f"  persisted {stats.persisted}  stored {stats.buffered} (unsent {stats.unsent})\n"
    )


def _replay(args: argparse.Namespace, address: BrokerAddress, device_options: DeviceOptions) -> int:
    recording = load_recording(args.replay)
    steps = plan_replay(recording, speed=args.speed, start=None if args.original_time else utcnow())
    device = Device(recording.device_id, address, device_options)
    stop = threading.Event()
    signalled = threading.Event()
    sent = 0

    def run() -> None:
        nonlocal sent
        sent = play(steps, device.send, stop=stop)

    def stats() -> FleetStats:
        return FleetStats.total([device.stats()], produced=sent, elapsed_s=time.monotonic() - started, lag_s=0.0)

    sys.stderr.write(f"replay: {len(steps)} samples of {recording.device_id} -> {address}, speed {args.speed:g}\n")
    started = time.monotonic()
    device.connect()
    try:
        if not device.wait_connected(args.connect_timeout):
            sys.stderr.write("warning: not connected yet; samples are held until the device connects\n")
        return _drive(
            run,
            stop.set,
            stats=stats,
            wait_acked=device.wait_acked,
            wait_persisted=device.wait_persisted,
            args=args,
            signalled=signalled,
        )
    finally:
        device.close(timeout_s=SIGNAL_CLOSE_S if signalled.is_set() else 5.0)


def _drive(
    run: Callable[[], None],
    stop: Callable[[], None],
    *,
    stats: Callable[[], FleetStats],
    wait_acked: Callable[[float], bool],
    wait_persisted: Callable[[float], bool],
    args: argparse.Namespace,
    signalled: threading.Event,
) -> int:
    """Run `run` on a worker thread, print progress until it ends (or Ctrl-C/SIGTERM, which set
    `signalled` and shorten the drain), drain, summarise."""
    worker = threading.Thread(target=run, name="fleet-scheduler", daemon=True)
    began = stats()
    started = time.monotonic()

    def stop_on_signal() -> None:
        signalled.set()
        stop()

    with _sigterm_calls(stop_on_signal):
        worker.start()
        try:
            last, last_t = began, started
            while worker.is_alive():
                worker.join(PROGRESS_INTERVAL_S)
                now = time.monotonic()
                current = stats()
                if not args.quiet:
                    sys.stderr.write(_progress_line(current, last, now - started, now - last_t))
                last, last_t = current, now
        except KeyboardInterrupt:
            sys.stderr.write("interrupted: stopping\n")
            stop_on_signal()
            worker.join()
    run_s = time.monotonic() - started
    ran = stats()
    drain_s = min(args.drain, SIGNAL_DRAIN_S) if signalled.is_set() else args.drain
    deadline = time.monotonic() + drain_s
    drained = wait_acked(drain_s)
    if drained and stats().persisted:
        # A bridge is answering: give it the rest of the drain time to confirm what it was sent.
        wait_persisted(max(0.0, deadline - time.monotonic()))
    final = stats()
    sys.stderr.write(_summary(final, ran.published - began.published, run_s, args.store_dir))
    if not drained:
        sys.stderr.write(f"warning: {final.outbox} samples still unacknowledged after {drain_s:g} s\n")
    return 0 if drained and not final.refused and not final.dropped else 1


def _progress_line(current: FleetStats, last: FleetStats, t_s: float, dt_s: float) -> str:
    dt = max(dt_s, 1e-9)
    return (
        f"{t_s:7.1f}s  connected {current.connected}/{current.devices}"
        f"  published {current.published} (+{(current.published - last.published) / dt:.0f}/s)"
        f"  acked {current.acked} (+{(current.acked - last.acked) / dt:.0f}/s)"
        f"  outbox {current.outbox}  resent {current.resent}  buffered {current.buffered}"
        f"  persisted {current.persisted}  lag {current.lag_s:.2f}s\n"
    )


def _summary(stats: FleetStats, published_in_run: int, run_s: float, store_dir: Path | None) -> str:
    rate = published_in_run / run_s if run_s > 0 else 0.0
    store = f"store {store_dir}" if store_dir is not None else "store in memory"
    return (
        f"summary: {run_s:.1f} s, {stats.devices} devices: produced {stats.produced}, published {stats.published} "
        f"({rate:.0f} samples/s, ~{rate * READINGS_PER_SAMPLE:.0f} readings/s at {READINGS_PER_SAMPLE} per sample), "
        f"acked {stats.acked} ({stats.acked_readings} readings), resent {stats.resent}, deferred {stats.deferred}, "
        f"refused {stats.refused}, unacknowledged {stats.outbox}, rejected {stats.rejected}\n"
        f"{store}: buffered {stats.buffered}, persisted {stats.persisted}, "
        f"resent_unpersisted {stats.resent_unpersisted}, dropped {stats.dropped}, "
        f"oldest_unpersisted_age_s {stats.oldest_unpersisted_age_s:.1f}\n"
    )


@contextlib.contextmanager
def _sigterm_calls(stop: Callable[[], None]) -> Iterator[None]:
    """While inside, SIGTERM stops the run as Ctrl-C does (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_fd_limit(needed: int) -> None:
    """Raise this process's open-file limit towards `needed`, as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0, got {text}")
    return value
