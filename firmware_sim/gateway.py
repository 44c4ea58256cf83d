"""A simulated edge gateway: one MQTT connection publishing one-second windows for every sensor of its site.

The gateway (docs/gateways.md) logs in with its own device account (`{site}-gw`). The broker's ACL gives
that account write on each child sensor's `telemetry`, `events` and `status`, and read on their
`persisted` and `rejected` (broker/acl.py); so the gateway publishes each sensor's window as that
sensor's telemetry, a `Sample` with `agg` = {kind: min, max, avg, count, std}, and the bridge stores it
as the sensor's own.

Threads: the sampler (`_sample`) reads every sensor at its native rate (firmware_sim.site), closes the
windows that ended and stores each as a sample of its sensor; paho's network thread; and the forwarder
(`_forward`), which publishes what the stores hold whenever the connection has room. Store-and-forward
is the device's, per sensor: one `SampleStore` and one `Forwarder` (firmware_sim.forward) for each child,
so a window leaves the gateway's disk only when the bridge lists it on that child's `persisted`; the
MQTT window (`max_inflight`) and the paho outbox are shared, as there is one connection.

The link's speed decides what is sent (`firmware_sim.linkquality`): the gateway measures what the
broker acknowledges while it has more to send than the link takes, and picks a quality level.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware_sim.address import BrokerAddress
from firmware_sim.device import PERSIST_TIMEOUT_S, STORE_MAX_SAMPLES
from firmware_sim.errors import StoreError
from firmware_sim.forward import Forwarder
from firmware_sim.linkquality import LEVELS, LinkMeter, QualityLevel, level_for
from firmware_sim.outbox import Outbox, OutboxEntry, Settled
from firmware_sim.site import SiteSensor, Window, gateway_id, open_window, reading_times, site_sensors, window_ts
from firmware_sim.store import SampleStore, open_store
from models.events import Status
from models.state import Persisted, RejectedNotice
from models.telemetry import Sample
from models.topics import TopicKind, device_topic

logger = logging.getLogger(__name__)

QOS_AT_LEAST_ONCE: Final = 1
TICK_S: Final = 0.1  # how often the sampler catches up with the sensors' readings
FORWARDER_IDLE_WAIT_S: Final = 0.5
_PERSISTED = msgspec.json.Decoder(Persisted)
_REJECTED = msgspec.json.Decoder(RejectedNotice)
_OFFLINE: Final = msgspec.json.encode(Status(state="offline"))
# An MQTT PUBLISH carries more than its payload: fixed header, topic, packet id, properties.
PUBLISH_OVERHEAD_BYTES: Final = 8


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """A site and how its gateway connects, buffers and starts. Times in seconds.

    `link_kbps`: the link's speed as configured (`--link-kbps`), the starting estimate; the gateway
    measures the link from then on. None: start at the best level and measure.
    """

    site: str
    sensors_per_kind: int = 1
    seed: int = 0
    password: str | None = None  # None: the password from the broker URL, if any
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 10
    max_inflight: int = 20
    store_dir: Path | None = None
    store_max_samples: int = STORE_MAX_SAMPLES
    persist_timeout_s: float = PERSIST_TIMEOUT_S
    batch_max_samples: int = 50
    link_kbps: float | None = None
    adapt: bool = True  # False: stay at the level `link_kbps` gives

    def __post_init__(self) -> None:
        if self.sensors_per_kind < 1:
            raise ValueError("sensors_per_kind must be ≥ 1")
        if self.max_inflight < 1:
            raise ValueError("max_inflight must be ≥ 1")


@dataclass(slots=True)
class GatewayStats:
    """Counters since start; `level` is the quality level in use now."""

    sensors: int
    level: str
    estimate_bps: float
    connected: bool = False
    connects: int = 0
    windows: int = 0  # windows closed and stored
    published: int = 0  # samples handed to the client the first time
    resent: int = 0  # samples sent again after `persisted` did not come
    acked: int = 0
    acked_bytes: int = 0
    persisted: int = 0  # freed by `persisted`
    refused: int = 0
    dropped: int = 0  # the oldest, dropped by a full store
    buffered: int = 0  # held by the stores
    unsent: int = 0  # held and not yet handed to the client
    level_changes: list[tuple[float, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Child:
    """One sensor behind the gateway, with its own store-and-forward and its open window."""

    sensor: SiteSensor
    forwarder: Forwarder
    telemetry: str
    persisted: str
    rejected: str
    window: Window | None = None
    window_end_s: float = -math.inf  # the end of the last window closed
    read_until_s: float = 0.0


class Gateway:
    """The gateway of one site; `start()` connects and samples, `close()` stops and keeps the stores on disk."""

    def __init__(
        self,
        address: BrokerAddress,
        options: GatewayOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.address, self.options = address, options
        self.device_id = gateway_id(options.site)
        self._clock, self._wall = clock, wall_clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._meter = LinkMeter(initial_bps=options.link_kbps * 1000 if options.link_kbps is not None else None)
        self._level = level_for(self._meter.estimate_bps)
        self._children: dict[str, _Child] = {}
        self._by_topic: dict[str, _Child] = {}
        self._stores: list[SampleStore] = []
        now_s = wall_clock()
        for sensor in site_sensors(options.site, options.sensors_per_kind, seed=options.seed):
            store = open_store(options.store_dir, sensor.device_id, options.store_max_samples)
            self._stores.append(store)
            child = _Child(
                sensor,
                Forwarder(
                    store, persist_timeout_s=options.persist_timeout_s, batch_max_samples=options.batch_max_samples
                ),
                device_topic(sensor.device_id, TopicKind.TELEMETRY),
                device_topic(sensor.device_id, TopicKind.PERSISTED),
                device_topic(sensor.device_id, TopicKind.REJECTED),
                read_until_s=now_s,
            )
            self._children[sensor.device_id] = child
            for topic in (child.persisted, child.rejected):
                self._by_topic[topic] = child
        self._outbox = Outbox()
        # id(entry) -> its sensor and the train it went in (firmware_sim.linkquality), while in flight
        self._in_flight: dict[int, tuple[_Child, int | None]] = {}
        self._n = GatewayStats(
            sensors=len(self._children), level=self._level.name, estimate_bps=self._meter.estimate_bps
        )
        self._n.level_changes.append((0.0, self._level.name))
        self._started = clock()
        self._connected = False
        self._sampling_stopped = False
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._status_topic = device_topic(self.device_id, TopicKind.STATUS)

        client = Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.device_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        password = options.password if options.password is not None else address.password
        client.username_pw_set(self.device_id, password)
        if address.tls:
            client.tls_set(ca_certs=address.ca_file)
        client.will_set(self._status_topic, _OFFLINE, qos=QOS_AT_LEAST_ONCE, retain=True)
        client.reconnect_delay_set(options.reconnect_min_s, options.reconnect_max_s)
        client.max_inflight_messages_set(options.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def sensors(self) -> list[SiteSensor]:
        """The site's sensors, in order."""
        return [child.sensor for child in self._children.values()]

    @property
    def level(self) -> QualityLevel:
        """The quality level in use now."""
        with self._lock:
            return self._level

    def start(self) -> None:
        """Connect (paho reconnects by itself after every loss), and start sampling and forwarding."""
        self._client.connect_async(
            self.address.host, self.address.port, keepalive=self.options.keepalive_s, clean_start=True
        )
        self._client.loop_start()
        for target, name in ((self._sample, "sampler"), (self._forward, "forwarder")):
            thread = threading.Thread(target=target, name=f"{self.device_id}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_connected(self, timeout_s: float) -> bool:
        """True once the broker accepted the connection."""
        return self._wait_for(lambda: self._connected, timeout_s)

    def wait_persisted(self, timeout_s: float) -> bool:
        """True once every stored window was confirmed by the bridge (the stores are empty)."""
        return self._wait_for(lambda: all(c.forwarder.buffered == 0 for c in self._children.values()), timeout_s)

    def stop_sampling(self) -> None:
        """Close no more windows (what is stored is still forwarded)."""
        with self._changed:
            self._sampling_stopped = True
            self._changed.notify_all()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop, say `offline`, disconnect; the stores keep what the bridge has not confirmed."""
        with self._changed:
            self._sampling_stopped = self._stopping = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()
        if self.connected:
            offline = msgspec.json.encode(Status(state="offline"))
            info = self._client.publish(self._status_topic, offline, qos=QOS_AT_LEAST_ONCE, retain=True)
            with self._lock:
                self._outbox.bind_untracked(info.mid)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                info.wait_for_publish(timeout_s)
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            for store in self._stores:
                store.close()

    @property
    def connected(self) -> bool:
        """Whether the broker accepted the current connection."""
        with self._lock:
            return self._connected

    def stats(self) -> GatewayStats:
        """A copy of the counters."""
        with self._lock:
            self._n.buffered = sum(c.forwarder.buffered for c in self._children.values())
            self._n.unsent = sum(c.forwarder.unsent for c in self._children.values())
            self._n.connected = self._connected
            self._n.level = self._level.name
            self._n.estimate_bps = self._meter.estimate_bps
            return GatewayStats(**{name: getattr(self._n, name) for name in GatewayStats.__dataclass_fields__})

    def _wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, max(0.0, timeout_s))

    # -- sampler thread ----------------------------------------------------------------------------

    def _sample(self) -> None:
        """Every tick: read each sensor up to now, store the windows that ended, and adapt the level."""
        while True:
            with self._changed:
                if self._changed.wait_for(lambda: self._sampling_stopped, TICK_S):
                    return
            now_s = self._wall()
            for child in self._children.values():
                closed = self._read(child, now_s)
                if closed:
                    self._store(child, closed)
            if self.options.adapt:
                self._adapt()

    def _read(self, child: _Child, now_s: float) -> list[Window]:
        """Readings of `child` since the last tick; the windows they closed. Sampler only."""
        closed: list[Window] = []
        level = self._level
        for t_s in reading_times(child.sensor, child.read_until_s, now_s):
            if child.window is not None and t_s >= child.window.end_s:
                closed.append(child.window)
                child.window_end_s, child.window = child.window.end_s, None
            if child.window is None:
                child.window = open_window(t_s, level.window_s, child.window_end_s)
            child.window.add(child.sensor.value(t_s))
        child.read_until_s = now_s
        # A window ends when its time is over, not at the next reading (a level sensor reads every 10 s).
        if child.window is not None and now_s >= child.window.end_s:
            closed.append(child.window)
            child.window_end_s, child.window = child.window.end_s, None
        return closed

    def _store(self, child: _Child, closed: list[Window]) -> None:
        level = self._level
        if child.sensor.kind not in level.kinds:
            return  # this level leaves the kind out: its windows are not kept
        with self._lock:
            store = child.forwarder.store
            samples = [
                Sample(
                    seq=store.next_seq + i,
                    boot=store.boot,
                    ts=window_ts(window.start_s),
                    agg={child.sensor.kind: level.shape(window.summary())},
                )
                for i, window in enumerate(closed)
            ]
            try:
                entry, dropped = child.forwarder.append(samples, send_now=False)
            except StoreError as exc:
                logger.error("%s: %s", child.sensor.device_id, exc)
                return
            assert entry is None  # send_now=False: the forwarder thread publishes
            self._n.windows += len(samples)
            self._n.dropped += dropped
            self._changed.notify_all()

    def _adapt(self) -> None:
        with self._lock:
            level = level_for(self._meter.estimate_bps)
            if level is not self._level:
                logger.info(
                    "%s: link %.0f kbit/s: quality %s -> %s",
                    self.device_id,
                    self._meter.estimate_bps / 1000,
                    self._level.name,
                    level.name,
                )
                self._level = level
                self._n.level_changes.append((self._clock() - self._started, level.name))

    # -- forwarder thread --------------------------------------------------------------------------

    def _forward(self) -> None:
        """Publish stored windows, oldest first, round-robin over the sensors, while the window has room."""
        while True:
            with self._changed:
                while True:
                    if self._stopping:
                        return
                    batch = self._due()
                    if batch:
                        break
                    self._changed.wait(self._idle_wait_s())
                for _, entry in batch:
                    self._outbox.start([entry])
            self._transmit(batch)

    def _idle_wait_s(self) -> float:
        """Until the next resend comes due (a PUBACK, a window or a connect wakes the forwarder sooner)."""
        due = [d for c in self._children.values() if (d := c.forwarder.next_due_at()) is not None]
        if not due:
            return FORWARDER_IDLE_WAIT_S
        return min(FORWARDER_IDLE_WAIT_S, max(0.01, min(due) - self._clock()))

    def _due(self) -> list[tuple[_Child, OutboxEntry]]:
        room = self.options.max_inflight - self._outbox.in_flight_messages
        if not self._connected or room <= 0:
            return []
        now = self._clock()
        batch: list[tuple[_Child, OutboxEntry]] = []
        progress = True
        while room > 0 and progress:
            progress = False
            for child in self._children.values():
                if room <= 0:
                    break
                try:
                    entries = child.forwarder.take(now, messages=1)
                except StoreError as exc:
                    logger.error("%s: %s", child.sensor.device_id, exc)
                    continue
                for entry in entries:
                    batch.append((child, entry))
                    room -= 1
                    progress = True
        return batch

    def _transmit(self, batch: list[tuple[_Child, OutboxEntry]]) -> None:
        with self._lock:
            train = self._meter.train(len(batch)) if self.options.adapt else None
        for i, (child, entry) in enumerate(batch):
            info = self._client.publish(child.telemetry, entry.payload, qos=QOS_AT_LEAST_ONCE)
            with self._lock:
                if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                    for rest_child, rest in reversed(batch[i:]):
                        self._outbox.abandon(rest)
                        rest_child.forwarder.not_taken(rest)
                    if train is not None:
                        self._meter.abandon(train)
                    break
                if entry.resend:
                    self._n.resent += entry.samples
                else:
                    self._n.published += entry.samples
                self._in_flight[id(entry)] = (child, train)
                settled = self._outbox.bind(entry, info.mid)
                if settled is not None:
                    self._record(settled)

    def _record(self, settled: Settled) -> None:
        """A PUBACK (or refusal) of a telemetry message. With the lock held."""
        entry = settled.entry
        child, train = self._in_flight.pop(id(entry))
        if settled.failed:
            self._n.refused += entry.samples
            child.forwarder.discard(entry.keys)
            if train is not None:
                self._meter.abandon(train)
        else:
            self._n.acked += entry.samples
            size = len(entry.payload) + len(child.telemetry) + PUBLISH_OVERHEAD_BYTES
            self._n.acked_bytes += size
            if train is not None:
                self._meter.acked(train, size, self._clock())
            child.forwarder.acked(entry, self._clock())
        self._changed.notify_all()

    # -- paho callbacks (network thread) -----------------------------------------------------------

    def _on_connect(
        self, client: Client, userdata: Any, flags: ConnectFlags, reason: ReasonCode, properties: Properties | None
    ) -> None:
        if reason.is_failure:
            logger.warning("%s: broker refused the connection: %s", self.device_id, reason)
            return
        online = msgspec.json.encode(Status(state="online"))
        info = client.publish(self._status_topic, online, qos=QOS_AT_LEAST_ONCE, retain=True)
        client.subscribe([(topic, QOS_AT_LEAST_ONCE) for topic in self._by_topic])
        with self._lock:
            self._outbox.bind_untracked(info.mid)
            self._connected = True
            self._n.connects += 1
            for child in self._children.values():
                child.forwarder.reconnected()
            self._changed.notify_all()
        logger.info("%s: connected to %s for %d sensors", self.device_id, self.address, len(self._children))

    def _on_disconnect(
        self, client: Client, userdata: Any, flags: DisconnectFlags, reason: ReasonCode, properties: Properties | None
    ) -> None:
        with self._lock:
            self._connected = False
            self._meter.reset_trains()
            self._changed.notify_all()
        logger.info("%s: disconnected (%s)", self.device_id, reason)

    def _on_publish(
        self, client: Client, userdata: Any, mid: int, reason: ReasonCode, properties: Properties | None
    ) -> None:
        with self._lock:
            settled = self._outbox.settle(mid, failed=reason.is_failure)
            if settled is not None:
                self._record(settled)

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        child = self._by_topic.get(message.topic)
        if child is None:
            return
        try:
            if message.topic == child.persisted:
                persisted = _PERSISTED.decode(message.payload)
                with self._lock:
                    self._n.persisted += child.forwarder.confirm(persisted.ranges, self._clock())
                    self._changed.notify_all()
            else:
                notice = _REJECTED.decode(message.payload)
                logger.warning("%s: bridge refused seq %s: %s", child.sensor.device_id, notice.seq, notice.reason)
                if notice.boot is not None and notice.seq is not None:
                    with self._lock:
                        self._n.refused += child.forwarder.discard([(notice.boot, notice.seq)])
                        self._changed.notify_all()
        except (msgspec.DecodeError, StoreError) as exc:
            logger.warning("%s: %s on %s", child.sensor.device_id, exc, message.topic)


__all__ = ["LEVELS", "Gateway", "GatewayOptions", "GatewayStats"]
