"""One simulated device's MQTT connection, on paho-mqtt's threaded client like a device SDK.

What a device does on the wire (topics from `models.topics`):

* connects as MQTT 5 with clean start, user name = device id, and a retained Last Will
  `Status(state="offline")` on `fleet/v1/{id}/status`; on every connect it publishes a retained
  `Status(state="online")` and subscribes to its own `persisted` and `rejected` topics;
* publishes telemetry at QoS 1 on `fleet/v1/{id}/telemetry` (one `Sample`, or a `TelemetryBatch`),
  keeping every message in its `Outbox` until the broker's PUBACK arrives (see `outbox` for who resends
  what after a reconnect);
* records which (boot, seq) the broker acknowledged and which the bridge reported as persisted.

Reconnecting is paho's own policy, configured on purpose and nothing else: `loop_start()` runs paho's
`loop_forever(retry_first_connection=True)`, which waits `reconnect_min_s`, doubling up to
`reconnect_max_s`, between attempts. Every connect, refusal and loss is logged and counted.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage, MQTTMessageInfo
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware_sim.address import BrokerAddress
from firmware_sim.ledger import SeqLedger
from firmware_sim.outbox import Outbox, OutboxEntry, Settled
from models.events import Status
from models.state import Persisted, PersistedRange, RejectedNotice
from models.telemetry import Sample, TelemetryBatch, utcnow
from models.topics import TopicKind, device_topic, is_device_id

logger = logging.getLogger(__name__)

QOS_AT_LEAST_ONCE: Final = 1
REJECTED_KEPT: Final = 100
_PERSISTED = msgspec.json.Decoder(Persisted)
_REJECTED = msgspec.json.Decoder(RejectedNotice)
_OFFLINE: Final = msgspec.json.encode(Status(state="offline"))


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """Files for `mqtts://`: CA bundle (None: the system's), and a client certificate and key if used."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceOptions:
    """How a simulated device connects and buffers. Times in seconds (paho takes whole seconds)."""

    password: str | None = None  # None: the password from the broker URL, if any
    tls: TlsOptions | None = None
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    max_inflight: int = 100  # QoS 1 messages paho keeps unacknowledged on the wire at once
    outbox_max_samples: int = 100_000  # the offline buffer; the oldest samples go first when it is full


@dataclass(frozen=True, slots=True)
class DeviceStats:
    """Counters of one device, in samples unless named otherwise.

    `published`: handed to the MQTT client (each sample once). `acked`: acknowledged by the broker
    (`acked_readings` counts their readings). `resent`: retransmitted after a reconnect because they
    were in flight when the connection dropped. `deferred`: produced while offline, held in the outbox
    and published when the connection came back. `refused`: the broker answered with a failure reason
    code (not retried: a refusal does not go away by resending). `dropped`: pushed out of a full
    offline buffer. `outbox`: not yet acknowledged. `persisted`: confirmed by the bridge on
    `persisted`. `rejected`: notices received on `rejected`.
    """

    device_id: str
    connected: bool
    connects: int
    disconnects: int
    published: int
    acked: int
    acked_readings: int
    resent: int
    deferred: int
    refused: int
    dropped: int
    outbox: int
    in_flight_messages: int
    persisted: int
    rejected: int


@dataclass(slots=True)
class _Counters:
    """The running counters behind `DeviceStats` (see there for their meaning)."""

    connects: int = 0
    disconnects: int = 0
    published: int = 0
    acked: int = 0
    acked_readings: int = 0
    resent: int = 0
    deferred: int = 0
    refused: int = 0
    dropped: int = 0
    rejected: int = 0


class Device:
    """One simulated device on its own paho client and network thread.

    `send()` may be called from any one thread (the fleet's scheduler); paho's callbacks run on the
    device's network thread. A lock guards the bookkeeping, and is never held while calling into paho,
    because paho holds its own lock while it runs `on_publish`.
    """

    def __init__(
        self,
        device_id: str,
        address: BrokerAddress,
        options: DeviceOptions | None = None,
        *,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        if not is_device_id(device_id):
            raise ValueError(f"{device_id!r} is not a valid device id")
        self.device_id = device_id
        self.address = address
        self.options = options = options or DeviceOptions()
        self._on_settled = on_settled
        self._telemetry_topic = device_topic(device_id, TopicKind.TELEMETRY)
        self._status_topic = device_topic(device_id, TopicKind.STATUS)
        self._persisted_topic = device_topic(device_id, TopicKind.PERSISTED)
        self._rejected_topic = device_topic(device_id, TopicKind.REJECTED)

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._outbox = Outbox(options.outbox_max_samples)
        self._acked = SeqLedger()
        self._persisted = SeqLedger()
        self._rejected: deque[RejectedNotice] = deque(maxlen=REJECTED_KEPT)
        self._connected = False
        self._closing = False
        self._offline: MQTTMessageInfo | None = None
        self._n = _Counters()

        client = Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=device_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        password = options.password if options.password is not None else address.password
        client.username_pw_set(device_id, password)
        if address.tls:
            tls = options.tls or TlsOptions()
            client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file)
        client.will_set(self._status_topic, _OFFLINE, qos=QOS_AT_LEAST_ONCE, retain=True)
        client.reconnect_delay_set(options.reconnect_min_s, options.reconnect_max_s)
        client.max_inflight_messages_set(options.max_inflight)
        # Unlimited on paho's side: the outbox bounds what is held offline, max_inflight what is on the wire.
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client

    # -- lifecycle ---------------------------------------------------------------------------------

    def connect(self) -> None:
        """Start the network thread; it connects, and reconnects after every loss, by itself."""
        self._client.connect_async(
            self.address.host, self.address.port, keepalive=self.options.keepalive_s, clean_start=True
        )
        self._client.loop_start()

    @property
    def connected(self) -> bool:
        """Whether the broker accepted the current connection (as far as the device knows)."""
        with self._lock:
            return self._connected

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait until connected; False if `timeout_s` passed first."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            return self._changed.wait_for(lambda: self._connected, max(0.0, deadline - time.monotonic()))

    def close(self, timeout_s: float = 5.0) -> None:
        """Say `offline` (retained), disconnect cleanly and stop the network thread.

        A clean DISCONNECT discards the Last Will, so the device states its absence itself. The three
        steps are also public, so that a fleet can overlap them across its devices.
        """
        self.begin_close()
        self.disconnect(timeout_s)
        self.join()

    def begin_close(self) -> None:
        """Stop counting disconnects as faults, and publish the retained `offline` status if connected."""
        with self._lock:
            self._closing = True
            connected = self._connected
        if not connected:
            return
        offline = msgspec.json.encode(Status(state="offline", ts=utcnow()))
        info = self._client.publish(self._status_topic, offline, qos=QOS_AT_LEAST_ONCE, retain=True)
        with self._lock:
            # Before or after its ack: either way the ack must not be mistaken for telemetry.
            self._outbox.bind_untracked(info.mid)
        self._offline = info

    def disconnect(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the broker to acknowledge `offline`, then send DISCONNECT."""
        info, self._offline = self._offline, None
        if info is not None and info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            info.wait_for_publish(max(0.0, timeout_s))
        self._client.disconnect()

    def join(self) -> None:
        """Stop the network thread (it ends promptly after `disconnect`)."""
        self._client.loop_stop()

    def cut_network(self) -> bool:
        """Fault: drop the TCP connection without DISCONNECT, as a dead cellular link would.

        The broker then publishes the Last Will (`offline`), and paho reconnects after its delay.
        False when there was no connection to cut.
        """
        sock = self._client.socket()
        if not isinstance(sock, socket.socket):
            return False
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return False
        logger.info("%s: network cut (fault injected)", self.device_id)
        return True

    # -- telemetry ---------------------------------------------------------------------------------

    def send(self, samples: Sample | Sequence[Sample]) -> None:
        """Publish one sample, or several as one `TelemetryBatch` message, at QoS 1 (or hold it offline)."""
        if isinstance(samples, Sample):
            payload = msgspec.json.encode(samples)
            batch: Sequence[Sample] = (samples,)
        else:
            batch = samples
            if not batch:
                return
            payload = msgspec.json.encode(TelemetryBatch(samples=list(batch)))
        entry = OutboxEntry(
            payload=payload,
            keys=tuple((s.boot, s.seq) for s in batch),
            readings=sum(s.readings for s in batch),
        )
        with self._lock:
            self._count_dropped(self._outbox.hold(entry))
            if not self._connected:
                self._n.deferred += entry.samples
                return
            # Anything held (an earlier publish the client would not take) goes out first, in order.
            entries = self._outbox.take_held()
        self._transmit(entries)

    @property
    def in_flight(self) -> int:
        """Telemetry messages handed to the MQTT client and not yet acknowledged."""
        with self._lock:
            return self._outbox.in_flight_messages

    def wait_acked(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty (everything acknowledged or refused); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            return self._changed.wait_for(lambda: not self._outbox, max(0.0, deadline - time.monotonic()))

    def acknowledged(self) -> list[PersistedRange]:
        """The (boot, seq) ranges the broker acknowledged."""
        with self._lock:
            return self._acked.ranges()

    def persisted(self) -> list[PersistedRange]:
        """The (boot, seq) ranges the bridge reported as committed to the database."""
        with self._lock:
            return self._persisted.ranges()

    def rejected(self) -> list[RejectedNotice]:
        """The most recent rejection notices from the bridge, oldest first."""
        with self._lock:
            return list(self._rejected)

    def stats(self) -> DeviceStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return DeviceStats(
                device_id=self.device_id,
                connected=self._connected,
                outbox=self._outbox.pending_samples,
                in_flight_messages=self._outbox.in_flight_messages,
                persisted=len(self._persisted),
                **dataclasses.asdict(self._n),
            )

    def _transmit(self, entries: list[OutboxEntry]) -> None:
        """Hand entries to paho in order. Called without the lock (paho may call back into us)."""
        settled_early = False
        for i, entry in enumerate(entries):
            info = self._client.publish(self._telemetry_topic, entry.payload, qos=QOS_AT_LEAST_ONCE)
            with self._lock:
                if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                    # Not taken (packet ids exhausted): keep the rest held for the next send or connect.
                    self._outbox.requeue(entries[i:])
                    logger.warning("%s: MQTT client queue full; %d messages held", self.device_id, len(entries) - i)
                    break
                # MQTT_ERR_NO_CONN still means taken: paho sends it after the next CONNACK.
                self._n.published += entry.samples
                settled = self._outbox.bind(entry, info.mid)
                if settled is not None:
                    self._record(settled)
                    settled_early = True
        if settled_early and self._on_settled is not None:
            self._on_settled()

    def _record(self, settled: Settled) -> None:
        """Count a settled entry and wake waiters. Called with the lock held."""
        entry = settled.entry
        if settled.failed:
            self._n.refused += entry.samples
        else:
            self._n.acked += entry.samples
            self._n.acked_readings += entry.readings
            for boot, seq in entry.keys:
                self._acked.add(boot, seq)
        self._changed.notify_all()

    def _count_dropped(self, dropped: list[OutboxEntry]) -> None:
        if dropped:
            lost = sum(e.samples for e in dropped)
            self._n.dropped += lost
            logger.warning("%s: offline buffer full, dropped the %d oldest samples", self.device_id, lost)

    # -- paho callbacks (network thread) -----------------------------------------------------------

    def _on_connect(
        self, client: Client, userdata: Any, flags: ConnectFlags, reason: ReasonCode, properties: Properties | None
    ) -> None:
        if reason.is_failure:
            logger.warning("%s: broker refused the connection: %s", self.device_id, reason)
            return
        online = msgspec.json.encode(Status(state="online", ts=utcnow()))
        status = client.publish(self._status_topic, online, qos=QOS_AT_LEAST_ONCE, retain=True)
        client.subscribe([(self._persisted_topic, QOS_AT_LEAST_ONCE), (self._rejected_topic, QOS_AT_LEAST_ONCE)])
        with self._lock:
            self._outbox.bind_untracked(status.mid)
            self._connected = True
            self._n.connects += 1
            # paho resends these itself after this callback returns, with DUP set.
            resent = self._outbox.in_flight_samples
            self._n.resent += resent
            held = self._outbox.take_held()
            connects = self._n.connects
            self._changed.notify_all()
        if connects == 1:
            logger.info("%s: connected to %s", self.device_id, self.address)
        else:
            logger.info(
                "%s: reconnected (connect #%d); resending %d in-flight and publishing %d held samples",
                self.device_id,
                connects,
                resent,
                sum(e.samples for e in held),
            )
        self._transmit(held)

    def _on_connect_fail(self, client: Client, userdata: Any) -> None:
        logger.info("%s: cannot reach %s; paho retries with backoff", self.device_id, self.address)

    def _on_disconnect(
        self,
        client: Client,
        userdata: Any,
        flags: DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            was_connected = self._connected
            self._connected = False
            if was_connected:
                self._n.disconnects += 1
            closing = self._closing
            self._changed.notify_all()
        if was_connected and not closing:
            logger.warning("%s: connection lost (%s); paho reconnects with backoff", self.device_id, reason)

    def _on_publish(
        self, client: Client, userdata: Any, mid: int, reason: ReasonCode, properties: Properties | None
    ) -> None:
        failed = reason.is_failure
        with self._lock:
            settled = self._outbox.settle(mid, failed=failed)
            if settled is not None:
                self._record(settled)
        if failed and settled is not None:
            logger.warning("%s: broker refused a telemetry message: %s", self.device_id, reason)
        if settled is not None and self._on_settled is not None:
            self._on_settled()

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        try:
            if message.topic == self._persisted_topic:
                persisted = _PERSISTED.decode(message.payload)
                with self._lock:
                    self._persisted.update(persisted.ranges)
            elif message.topic == self._rejected_topic:
                notice = _REJECTED.decode(message.payload)
                with self._lock:
                    self._rejected.append(notice)
                    self._n.rejected += 1
                logger.info("%s: bridge rejected seq %s: %s", self.device_id, notice.seq, notice.reason)
        except msgspec.DecodeError as exc:
            logger.warning(
                "%s: unreadable message on %s (%s): %.200r", self.device_id, message.topic, exc, message.payload
            )
