"""A fleet of simulated trucks: N devices stepped on a drift-free schedule, or as fast as acks allow.

Each device has its own paho client, network thread and forwarder thread, as real devices have their
own connections; one scheduler thread (the caller of `run()`) steps the trucks and hands their samples
to the devices. Two threads per device are fine up to a few hundred devices on a small machine (each
device also takes three file descriptors, two more with an on-disk store); for thousands, run several
processes with different `prefix` or `first_index`.

Each truck starts at its device's stored boot and next seq, and from the place on its route stored
with its last sample, so a fleet restarted on the same store directory continues every device's seq
and route where it stopped. Without a store directory every run is a new boot.

Schedule: at `rate_hz`, device i of n samples at `start + k/rate_hz + i/(n·rate_hz)` — spread over the
period rather than all at once, and computed from the start, so the schedule never drifts. A device told
a report interval — by a `set_report_interval` command or its twin's `report_interval_s`, whichever came
last — samples every that many seconds instead, from its next sample on. The sample
time is the scheduled time; when the scheduler falls behind it catches up and `FleetStats.lag_s` says
by how much. Without a rate (`rate_hz=None`) every connected device sends as fast as the broker
acknowledges, keeping at most `DeviceOptions.max_inflight` messages unacknowledged.

Commands (`firmware_sim.commands`, docs/commands.md): each truck obeys `set_report_interval` (its own
samples then follow that interval), `immobilise`/`mobilise` (it comes to a stop,
engine off, and stays so until mobilised), `unlock`, and `reboot` (the device drops off the network and
comes back with a new boot, its truck counting seq from zero), answering each on `cmd/ack`.

Scenarios (`FleetOptions.scenarios`, `firmware_sim.scenario`) make some trucks misbehave; the fleet takes
a device off the network (and back) when its truck's scenario says so, its samples buffered meanwhile.
"""

from __future__ import annotations

import heapq
import logging
import resource
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from firmware_sim.address import BrokerAddress
from firmware_sim.device import Device, DeviceOptions, DeviceStats, TlsOptions
from firmware_sim.errors import SimError
from firmware_sim.ota import UpdateFailedError, UpdateJob, download, verify
from firmware_sim.route import DEFAULT_CENTRE, GeoPoint
from firmware_sim.scenario import Scenario, fence_around
from firmware_sim.store import STORE_FDS_PER_DEVICE
from firmware_sim.truck import Truck, TruckPlace, decode_place, encode_place
from models.commands import CommandMessage
from models.firmware import OtaProgress, OtaStage
from models.telemetry import Sample, utcnow
from models.topics import is_device_id

logger = logging.getLogger(__name__)

FDS_PER_DEVICE: Final = 3  # the connection and paho's wake-up socket pair
FDS_SPARE: Final = 64
MIN_SLEEP_S: Final = 0.0005  # shorter waits cost more than they are worth: send now
IDLE_WAIT_S: Final = 0.05  # unthrottled mode with every device at its window: wait for an ack this long
OTA_GIVE_UP_S: Final = 600.0  # a firmware download that cannot finish in this long fails
REPORT_ACK_WAIT_S: Final = 5.0  # an updater about to restart waits this long for its last report's PUBACK


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """What the fleet simulates and how fast. `count` is samples per device; both limits may be set."""

    devices: int = 20
    rate_hz: float | None = 1.0  # samples per second per device; None: as fast as acks allow
    duration_s: float | None = None
    count: int | None = None
    batch: int = 1  # samples per message (a `TelemetryBatch` when > 1)
    prefix: str = "truck-"
    first_index: int = 1
    seed: int | str = 7
    centre: GeoPoint = DEFAULT_CENTRE
    device: DeviceOptions = field(default_factory=DeviceOptions)
    # Per-device secrets (device id -> secret), as `fleet devices import` prints them; a device
    # missing here uses `device.password` (or the URL's).
    credentials: Mapping[str, str] = field(default_factory=dict)
    # Per-device client certificates, `{cert_dir}/{id}.pem` and `.key` as `fleet certs device` makes them,
    # for the broker's certificate listener (mqtts://…:8884), where the certificate is the login.
    cert_dir: Path | None = None
    # Ignition on/off and harsh braking on `fleet/v1/{id}/events` (`firmware_sim.truck`).
    events: bool = True
    # Trucks that misbehave, by their place in this fleet (0: the first device).
    scenarios: Mapping[int, Scenario] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.devices < 0:
            raise ValueError("devices must be ≥ 0")
        if self.rate_hz is not None and not self.rate_hz > 0:
            raise ValueError("rate_hz must be > 0, or None for as fast as possible")
        if self.duration_s is not None and self.duration_s < 0:
            raise ValueError("duration_s must be ≥ 0")
        if self.count is not None and self.count < 0:
            raise ValueError("count must be ≥ 0")
        if self.batch < 1:
            raise ValueError("batch must be ≥ 1")
        if self.first_index < 0:
            raise ValueError("first_index must be ≥ 0")
        if any(not 0 <= i < self.devices for i in self.scenarios):
            raise ValueError(f"scenarios name trucks beyond the fleet's {self.devices}")
        # The first id has the fewest digits, the last the most: both must be valid.
        for index in {self.first_index, self.first_index + self.devices - 1} if self.devices else set():
            (device_id,) = device_ids(self.prefix, 1, index)
            if not is_device_id(device_id):
                raise ValueError(f"prefix {self.prefix!r} does not make valid device ids (e.g. {device_id!r})")


def fds_needed(options: FleetOptions) -> int:
    """File descriptors a fleet of `options` needs: connections, wake-up sockets, stores, and some spare."""
    per_device = FDS_PER_DEVICE + (STORE_FDS_PER_DEVICE if options.device.store_dir is not None else 0)
    return options.devices * per_device + FDS_SPARE


def device_ids(prefix: str, devices: int, first_index: int = 1) -> list[str]:
    """The ids of a fleet: `truck-0001`, `truck-0002`, … (wider numbers past 9999)."""
    return [f"{prefix}{i:04d}" for i in range(first_index, first_index + devices)]


@dataclass(frozen=True, slots=True)
class FleetStats:
    """Fleet totals (samples unless named otherwise; see `DeviceStats` for each counter's meaning).

    `produced` counts samples the trucks measured, including those still waiting to fill a batch.
    `lag_s` is how far the scheduler was behind its schedule at its last step.
    `oldest_unpersisted_age_s` is the largest of the devices'.
    """

    devices: int
    connected: int
    produced: int
    published: int
    acked: int
    acked_readings: int
    resent: int
    resent_unpersisted: int
    deferred: int
    refused: int
    dropped: int
    outbox: int
    buffered: int
    persisted: int
    rejected: int
    oldest_unpersisted_age_s: float
    elapsed_s: float
    lag_s: float

    @classmethod
    def total(cls, per_device: Sequence[DeviceStats], *, produced: int, elapsed_s: float, lag_s: float) -> Self:
        """Sum the device counters."""
        return cls(
            devices=len(per_device),
            connected=sum(s.connected for s in per_device),
            produced=produced,
            published=sum(s.published for s in per_device),
            acked=sum(s.acked for s in per_device),
            acked_readings=sum(s.acked_readings for s in per_device),
            resent=sum(s.resent for s in per_device),
            resent_unpersisted=sum(s.resent_unpersisted for s in per_device),
            deferred=sum(s.deferred for s in per_device),
            refused=sum(s.refused for s in per_device),
            dropped=sum(s.dropped for s in per_device),
            outbox=sum(s.outbox for s in per_device),
            buffered=sum(s.buffered for s in per_device),
            persisted=sum(s.persisted for s in per_device),
            rejected=sum(s.rejected for s in per_device),
            oldest_unpersisted_age_s=max((s.oldest_unpersisted_age_s for s in per_device), default=0.0),
            elapsed_s=elapsed_s,
            lag_s=lag_s,
        )


class Fleet:
    """N simulated trucks, each a `Truck` model on its own `Device` connection.

    Typical use: `start()`, `wait_connected()`, `run()` (blocks until the duration or count is reached,
    or until `stop()` from another thread), `wait_acked()`, `close()`. Also a context manager that
    starts and closes. `step_all()` steps every truck once by hand, for tests and scenarios.
    """

    def __init__(
        self,
        address: BrokerAddress,
        options: FleetOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.options = options = options or FleetOptions()
        self._clock = clock
        self._wall_clock = wall_clock
        self._progress = threading.Event()
        self._stop = threading.Event()
        _check_fd_limit(options)
        ids = device_ids(options.prefix, options.devices, options.first_index)
        devices: list[Device] = []
        try:
            for device_id in ids:  # a loop, not extend(): on failure, `devices` holds exactly those opened
                secret = options.credentials.get(device_id)
                device_options = options.device if secret is None else replace(options.device, password=secret)
                if options.cert_dir is not None:
                    device_options = replace(
                        device_options, tls=_certificate(device_options.tls, options.cert_dir, device_id)
                    )
                devices.append(
                    Device(
                        device_id,
                        address,
                        device_options,
                        on_settled=self._progress.set,
                        on_command=self._obey,
                        on_report_interval=self._follow_twin,
                        wall_clock=wall_clock,
                    )
                )
        except BaseException:
            for device in devices:
                device.join()  # closes the stores opened so far
            raise
        self.devices: tuple[Device, ...] = tuple(devices)
        self.trucks: tuple[Truck, ...] = tuple(
            Truck(
                d.device_id,
                seed=options.seed,
                centre=options.centre,
                boot=d.boot,
                first_seq=d.next_seq,
                resume=_saved_place(d),
                scenario=options.scenarios.get(i),
            )
            for i, d in enumerate(self.devices)
        )
        self._index = {device_id: i for i, device_id in enumerate(ids)}
        # Per device, set by commands on its network thread and read by the scheduler: a plain assignment
        # each, so no lock. A reboot's new boot is handed to the scheduler, which alone steps the truck.
        self._interval_s: list[float | None] = [None] * len(ids)
        self._rebooted: list[int | None] = [None] * len(ids)
        # Devices restarting right now (a reboot or a firmware update): off the network on purpose, which a
        # scenario's offline/online bookkeeping in `_step` must not undo.
        self._rebooting: set[int] = set()
        self._pending: list[list[Sample]] = [[] for _ in ids]
        self._produced = [0] * len(ids)
        self._started_at: float | None = None
        self._lag_s = 0.0

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start every device's threads; they connect (and reconnect) by themselves."""
        self._started_at = self._clock()
        for device in self.devices:
            device.connect()

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait until every device is connected; False if `timeout_s` passed first."""
        deadline = self._clock() + timeout_s
        return all(d.wait_connected(max(0.0, deadline - self._clock())) for d in self.devices)

    def stop(self) -> None:
        """Make `run()` return after its current step; a stopped fleet stays stopped. Any thread may call it."""
        self._stop.set()

    def run(self) -> None:
        """Step the fleet until its duration or count is reached, or `stop()`; then flush partial batches.

        `count` is samples per device in this run; with neither limit, run until `stop()`.
        """
        if self._started_at is None:
            self._started_at = self._clock()
        try:
            if self.options.rate_hz is None:
                self._run_unthrottled()
            else:
                self._run_scheduled(self.options.rate_hz)
        finally:
            self.flush()

    def fences(self) -> list[dict[str, Any]]:
        """The fence each `geofence` scenario's truck will drive through: a circle on its route where it
        will be when its scenario starts (GeoJSON, for the geofence API)."""
        dt_s = 1.0 / self.options.rate_hz if self.options.rate_hz else 1.0
        return [
            fence_around(truck.route_ahead(truck.scenario.start_s, dt_s), f"sim: {truck.device_id} drives through")
            for truck in self.trucks
            if truck.scenario is not None and truck.scenario.name == "geofence"
        ]

    def step_all(self, now: datetime | None = None, dt_s: float | None = None) -> None:
        """Step every truck once at device time `now` (default: the wall clock) and send as configured."""
        now = now or self._wall_clock()
        if dt_s is None:
            dt_s = 1.0 / self.options.rate_hz if self.options.rate_hz else 1.0
        for i in range(len(self.devices)):
            self._step(i, now, dt_s)

    def flush(self) -> None:
        """Send the samples waiting to fill a batch."""
        for i, device in enumerate(self.devices):
            if self._pending[i]:
                device.send(self._pending[i], state=encode_place(self.trucks[i].place()))
                self._pending[i] = []

    def wait_acked(self, timeout_s: float) -> bool:
        """Wait until every device sent everything and the broker acknowledged it; False on timeout."""
        deadline = self._clock() + timeout_s
        return all(d.wait_acked(max(0.0, deadline - self._clock())) for d in self.devices)

    def wait_persisted(self, timeout_s: float) -> bool:
        """Wait until every device's store is empty (all confirmed on `persisted`); False on timeout."""
        deadline = self._clock() + timeout_s
        return all(d.wait_persisted(max(0.0, deadline - self._clock())) for d in self.devices)

    def device_stats(self) -> list[DeviceStats]:
        """Every device's counters."""
        return [d.stats() for d in self.devices]

    def stats(self) -> FleetStats:
        """Fleet totals."""
        elapsed = 0.0 if self._started_at is None else self._clock() - self._started_at
        return FleetStats.total(self.device_stats(), produced=sum(self._produced), elapsed_s=elapsed, lag_s=self._lag_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop `run()`, say `offline`, disconnect every device, join its threads and close its store."""
        self._stop.set()
        if self.options.events:
            now = self._wall_clock()
            for truck, device in zip(self.trucks, self.devices, strict=True):
                parked = truck.ignition_off(now)
                if parked is not None:
                    device.send_event(parked.name, parked.ts, parked.data)
        # In phases across all devices, so that a slow broker costs `timeout_s` once, not per device.
        for device in self.devices:
            device.begin_close()
        deadline = self._clock() + timeout_s
        for device in self.devices:
            device.disconnect(deadline - self._clock())
        for device in self.devices:
            device.join()

    def report_interval_s(self, device_id: str) -> float | None:
        """The report interval a command or the device's twin set, whichever came last (None: the fleet's rate)."""
        return self._interval_s[self._index[device_id]]

    def _follow_twin(self, device: Device, interval_s: int | None) -> None:
        """The device applied a twin version with another report interval (on its network thread)."""
        self._interval_s[self._index[device.device_id]] = None if interval_s is None else float(interval_s)

    def _obey(self, device: Device, command: CommandMessage) -> None:
        """Carry out a command for one of the fleet's devices (on its network thread: nothing blocks)."""
        i = self._index[device.device_id]
        truck = self.trucks[i]
        if command.name == "set_report_interval":
            interval = float(command.args["interval_s"])
            self._interval_s[i] = interval
            device.acknowledge(command.id, "succeeded", {"interval_s": interval})
        elif command.name in ("immobilise", "mobilise"):
            truck.immobilised = command.name == "immobilise"
            device.acknowledge(command.id, "succeeded", {"immobilised": truck.immobilised})
        elif command.name == "unlock":
            device.acknowledge(command.id, "succeeded", {"doors": "unlocked"})
        elif command.name == "update_firmware":
            job = UpdateJob.of(command.id, command.args, command.expires_at)
            threading.Thread(target=self._update, args=(i, job), name=f"{device.device_id}-ota", daemon=True).start()
        elif command.name == "reboot":
            threading.Thread(
                target=self._reboot, args=(i, command.id), name=f"{device.device_id}-reboot", daemon=True
            ).start()
        else:
            device.acknowledge(command.id, "rejected", {"reason": f"a truck does not obey {command.name!r}"})

    def _update(self, i: int, job: UpdateJob) -> None:
        """Download, check, install, restart into the new version; or fail and keep the old one."""
        device = self.devices[i]

        def report(stage: OtaStage, wait_s: float = 0.0, **fields: Any) -> None:
            device.report_update(OtaProgress(command_id=job.command_id, stage=stage, **fields), wait_s=wait_s)

        try:
            report("downloading", percent=0.0)
            image = download(
                job, on_progress=lambda pct: report("downloading", percent=pct), give_up_after_s=OTA_GIVE_UP_S
            )
            if device.options.corrupt_downloads:
                image = bytes([image[0] ^ 0xFF]) + image[1:]
            report("verifying")
            verify(job, image)
        except UpdateFailedError as exc:
            report("failed", reason=str(exc), version=device.firmware_version)
            device.acknowledge(job.command_id, "failed", {"reason": str(exc), "version": device.firmware_version})
            return
        # Acknowledged before the restart drops the connection (reports before it acknowledged too: QoS 1
        # keeps their order), so the reports of the old boot arrive before those of the new one.
        report("installing", wait_s=REPORT_ACK_WAIT_S, version=job.version)
        boot = self._restart(i)
        device.firmware_version = job.version
        self._rebooted[i] = boot
        report("running", version=job.version)
        device.acknowledge(job.command_id, "succeeded", {"version": job.version, "boot": boot})

    def _restart(self, i: int) -> int:
        """Reboot device `i` (its new boot), keeping the scheduler from bringing it back meanwhile."""
        self._rebooting.add(i)
        try:
            return self.devices[i].reboot()
        finally:
            self._rebooting.discard(i)

    def _reboot(self, i: int, command_id: str) -> None:
        device = self.devices[i]
        boot = self._restart(i)
        self._rebooted[i] = boot
        # Answered from the new boot, as firmware does once it is up again.
        device.acknowledge(command_id, "succeeded", {"boot": boot})

    def _step(self, i: int, now: datetime, dt_s: float) -> None:
        pending = self._pending[i]
        truck = self.trucks[i]
        rebooted = self._rebooted[i]
        if rebooted is not None:
            self._rebooted[i] = None
            if pending:  # samples of the old boot go out before the first of the new one
                device = self.devices[i]
                device.send(pending[0] if len(pending) == 1 else pending, state=encode_place(truck.place()))
                self._pending[i] = pending = []
            truck.restart(rebooted)
        pending.append(truck.step(now, dt_s))
        if truck.offline != self.devices[i].gone and i not in self._rebooting:
            # Before the sample is handed over: a device that has just gone keeps it in its store.
            if truck.offline:
                self.devices[i].go_offline()
            else:
                self.devices[i].come_back()
        for event in truck.take_events():
            if self.options.events:
                self.devices[i].send_event(event.name, event.ts, event.data)
        self._produced[i] += 1
        if len(pending) >= self.options.batch:
            # The truck's place goes with its samples: a restart continues from the last one stored.
            place = encode_place(self.trucks[i].place())
            self.devices[i].send(pending[0] if len(pending) == 1 else pending, state=place)
            self._pending[i] = []

    def _run_scheduled(self, rate_hz: float) -> None:
        fleet_period = 1.0 / rate_hz
        n = len(self.devices)
        if n == 0:
            return
        count, duration = self.options.count, self.options.duration_s
        start = self._clock()
        wall_start = self._wall_clock()
        # Per device: k samples after `base` at `period` (drift-free: base + k·period, never summed). A report
        # interval (from a command or the device's twin) changes the device's period from its next sample on.
        schedules = [_Schedule(base=i * fleet_period / n - fleet_period, period=fleet_period) for i in range(n)]
        due = [(schedule.next_at(), i) for i, schedule in enumerate(schedules)]
        heapq.heapify(due)
        produced = [0] * n
        while due:
            offset, i = heapq.heappop(due)
            if duration is not None and offset >= duration:
                return  # the earliest due is past the end: so is every other
            delay = offset - (self._clock() - start)
            if delay > MIN_SLEEP_S:
                if self._stop.wait(delay):
                    return
            elif self._stop.is_set():
                return
            self._lag_s = max(0.0, -delay)
            schedule = schedules[i]
            self._step(i, wall_start + timedelta(seconds=offset), schedule.period)
            produced[i] += 1
            schedule.stepped(offset, self._interval_s[i] or fleet_period)
            if count is None or produced[i] < count:
                heapq.heappush(due, (schedule.next_at(), i))

    def _run_unthrottled(self) -> None:
        count, duration = self.options.count, self.options.duration_s
        window = self.options.device.max_inflight
        start = self._clock()
        last_step = [start] * len(self.devices)
        produced = [0] * len(self.devices)
        while not self._stop.is_set():
            now = self._clock()
            if duration is not None and now - start >= duration:
                return
            if count is not None and all(p >= count for p in produced):
                return
            self._progress.clear()
            wall_now = self._wall_clock()
            stepped = False
            for i, device in enumerate(self.devices):
                if count is not None and produced[i] >= count:
                    continue
                if not device.connected or device.in_flight >= window:
                    continue
                self._step(i, wall_now, now - last_step[i])
                last_step[i] = now
                produced[i] += 1
                stepped = True
            if not stepped:
                self._progress.wait(IDLE_WAIT_S)


@dataclass(slots=True)
class _Schedule:
    """One device's sample times: `base + k·period` for k = 1, 2, …; a new period starts from the last sample."""

    base: float
    period: float
    k: int = 1

    def next_at(self) -> float:
        return self.base + self.k * self.period

    def stepped(self, at: float, period: float) -> None:
        if period == self.period:
            self.k += 1
        else:
            self.base, self.period, self.k = at, period, 1


def _saved_place(device: Device) -> TruckPlace | None:
    """The truck's place stored with its device's last samples; None for a new device (or an unreadable one)."""
    saved = device.saved_state
    place = None if saved is None else decode_place(saved)
    if saved is not None and place is None:
        logger.warning("%s: the saved route place is unreadable; the truck starts its route afresh", device.device_id)
    return place


def _certificate(tls: TlsOptions | None, cert_dir: Path, device_id: str) -> TlsOptions:
    """`tls` with the device's own client certificate and key from `cert_dir`; `SimError` if it has none."""
    cert_file, key_file = cert_dir / f"{device_id}.pem", cert_dir / f"{device_id}.key"
    for path in (cert_file, key_file):
        if not path.is_file():
            raise SimError(f"no {path}: make the device's certificate with `fleet certs device {device_id}`")
    return replace(tls or TlsOptions(), cert_file=str(cert_file), key_file=str(key_file))


def _check_fd_limit(options: FleetOptions) -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = fds_needed(options)
    if soft != resource.RLIM_INFINITY and needed > soft:
        raise SimError(
            f"{options.devices} devices need about {needed} file descriptors, the limit is {soft}: "
            "raise it (ulimit -n) or run fewer devices per process"
        )
