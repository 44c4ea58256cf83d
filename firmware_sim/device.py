"""One simulated device's MQTT connection, on paho-mqtt's threaded client like a device SDK.

What a device does on the wire (topics from `models.topics`):

* connects as MQTT 5 with clean start, user name = device id, and a retained Last Will
  `Status(state="offline")` on `fleet/v1/{id}/status`; on every connect it publishes a retained
  `Status(state="online")` and subscribes to its own `persisted` and `rejected` topics;
* publishes telemetry at QoS 1 on `fleet/v1/{id}/telemetry` (one `Sample`, or a `TelemetryBatch`);
* frees a sample from its store only when the bridge lists it on `persisted` (or refuses it);
* publishes events (ignition, harsh braking) at QoS 1 on `fleet/v1/{id}/events`, kept until `persisted`
  lists them under `events` (`firmware_sim.events`);
* subscribes to its own `cmd` topic and answers each command on `cmd/ack` (`firmware_sim.commands`):
  `received` at once (or `expired` when it arrived after its `expires_at` by the device's clock), then
  `succeeded`/`failed` from whoever obeys it (`on_command`; `ping` it answers itself); a repeated id is
  answered again and never obeyed twice; `reboot()` restarts it with a new boot and seq from zero;
* subscribes to its twin's `config` (retained: after any absence it gets only the latest version),
  applies a newer version (`firmware_sim.twin`: the report interval the fleet's scheduler follows, known
  thresholds) and publishes what it applied, retained, on `config/reported`;
* for a scenario, leaves the network with its Last Will published (`go_offline()`: an MQTT 5 DISCONNECT
  with reason 0x04) and stays off until `come_back()`, buffering meanwhile.

Store-and-forward, and who owns what (details in `forward` and `outbox`): every sample goes into the
device's `SampleStore` (on disk under `DeviceOptions.store_dir`, else in memory) before it is first
published, and stays there until `persisted` confirms it. While offline samples only accumulate there
(bounded: the oldest are dropped and counted). paho owns a message from `publish()` to its PUBACK and
resends it by itself after a reconnect; after the PUBACK the device's forwarder owns it again and
resends what is still unconfirmed `persist_timeout_s` later, or at once after a reconnect. A device
thread, the *forwarder*, publishes backlogs and resends, as much as the in-flight window allows; live
samples are published directly by `send()` when nothing older is waiting.

Reconnecting is paho's own policy, configured on purpose and nothing else: `loop_start()` runs paho's
`loop_forever(retry_first_connection=True)`, which waits `reconnect_min_s`, doubling up to
`reconnect_max_s`, between attempts. Every connect, refusal and loss is logged and counted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import msgspec
from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage, MQTTMessageInfo
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware_sim.address import BrokerAddress
from firmware_sim.commands import CommandBook, FlakyAcks, ReceivedCommand
from firmware_sim.errors import StoreError
from firmware_sim.events import EventOutbox
from firmware_sim.forward import Forwarder
from firmware_sim.ledger import SeqLedger
from firmware_sim.outbox import Outbox, OutboxEntry, Settled
from firmware_sim.store import SampleStore, open_store
from firmware_sim.twin import TwinState
from models.commands import AckStatus, CommandAck, CommandMessage
from models.events import Status
from models.firmware import OtaProgress
from models.state import Persisted, PersistedRange, RejectedNotice
from models.telemetry import Sample, utcnow
from models.topics import TopicKind, device_topic, is_device_id
from models.twin import DESIRED_DECODER

logger = logging.getLogger(__name__)

QOS_AT_LEAST_ONCE: Final = 1
REJECTED_KEPT: Final = 100
STORE_MAX_SAMPLES: Final = 100_000
PERSIST_TIMEOUT_S: Final = 10.0
BATCH_MAX_SAMPLES: Final = 100
FORWARDER_IDLE_WAIT_S: Final = 1.0  # a safety net: the forwarder is woken whenever it has work
_PERSISTED = msgspec.json.Decoder(Persisted)
_REJECTED = msgspec.json.Decoder(RejectedNotice)
_OFFLINE: Final = msgspec.json.encode(Status(state="offline"))
_COMMAND = msgspec.json.Decoder(CommandMessage)
REBOOT_DOWN_S: Final = 0.5  # how long a rebooting device stays off the network

# Obeys one command on the device's behalf; called on the device's network thread, so it must not block.
OnCommand = Callable[["Device", CommandMessage], None]
# Called when an applied twin version changes the report interval (None: the key was removed).
OnReportInterval = Callable[["Device", int | None], None]
# MQTT 5: a clean DISCONNECT that still has the broker publish the Last Will, as a lost device would.
DISCONNECT_WITH_WILL: Final = 4


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """Files for `mqtts://`: CA bundle (None: the URL's `cafile`, else the system's), and a client certificate
    and key if used."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceOptions:
    """How a simulated device connects and buffers. Times in seconds (paho takes whole seconds).

    `store_dir`: where each device keeps its store (`{store_dir}/{device_id}.sqlite`), so that its
    unconfirmed samples, its seq counter and its place on its route survive a restart of the simulator;
    None keeps them in memory, lost with the process (every process starts a new boot, at seq 0). `store_max_samples` bounds
    the store (the oldest samples are dropped beyond it). `persist_timeout_s`: how long after the
    broker's PUBACK a sample may go unconfirmed by `persisted` before it is sent again.
    `batch_max_samples`: samples per message when sending a backlog or resending.
    """

    password: str | None = None  # None: the password from the broker URL, if any
    tls: TlsOptions | None = None
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    max_inflight: int = 100  # QoS 1 messages kept unacknowledged on the wire at once
    store_dir: Path | None = None
    store_max_samples: int = STORE_MAX_SAMPLES
    persist_timeout_s: float = PERSIST_TIMEOUT_S
    batch_max_samples: int = BATCH_MAX_SAMPLES
    flaky_acks: FlakyAcks | None = None  # answers to commands lost or late, on purpose
    firmware_version: str = "1.0.0"  # what the device runs until an update replaces it
    corrupt_downloads: bool = False  # fault: every firmware download arrives damaged (its hash check fails)

    def __post_init__(self) -> None:
        if self.store_max_samples < 1:
            raise ValueError("store_max_samples must be ≥ 1")
        if not self.persist_timeout_s > 0:
            raise ValueError("persist_timeout_s must be > 0")
        if not 1 <= self.batch_max_samples <= 1000:
            # 1000: the bridge's default `max_samples_per_message`; a larger batch is refused whole.
            raise ValueError("batch_max_samples must be 1…1000")
        if self.max_inflight < 1:
            raise ValueError("max_inflight must be ≥ 1")


@dataclass(frozen=True, slots=True)
class DeviceStats:
    """Counters of one device, in samples unless named otherwise.

    `published`: handed to the MQTT client the first time (each sample once). `acked`: acknowledged by
    the broker the first time (`acked_readings` counts their readings). `resent`: retransmitted by paho
    after a reconnect because they were in flight when the connection dropped. `resent_unpersisted`:
    sent again by the device because `persisted` did not confirm them within the timeout, or a
    reconnect came first. `deferred`: produced while offline and published when the connection came
    back. `refused`: the broker answered with a failure reason code (freed: a refusal does not go away
    by resending). `dropped`: pushed out of a full store. `outbox`: not yet acknowledged (unsent or in
    flight). `buffered`: in the store now, not yet confirmed. `persisted`: distinct samples confirmed
    by the bridge on `persisted`. `rejected`: notices received on `rejected`. `oldest_unpersisted_age_s`:
    how old (by device time) the oldest sample in the store is; 0 when it is empty.
    """

    device_id: str
    connected: bool
    connects: int
    disconnects: int
    published: int
    acked: int
    acked_readings: int
    resent: int
    resent_unpersisted: int
    deferred: int
    refused: int
    dropped: int
    outbox: int
    in_flight_messages: int
    buffered: int
    persisted: int
    rejected: int
    oldest_unpersisted_age_s: float


@dataclass(slots=True)
class _Counters:
    """The running counters behind `DeviceStats` (see there for their meaning)."""

    connects: int = 0
    disconnects: int = 0
    published: int = 0
    acked: int = 0
    acked_readings: int = 0
    resent: int = 0
    resent_unpersisted: int = 0
    deferred: int = 0
    refused: int = 0
    dropped: int = 0
    rejected: int = 0


class Device:
    """One simulated device on its own paho client, network thread and forwarder thread.

    `send()` may be called from any one thread (the fleet's scheduler); paho's callbacks run on the
    device's network thread, backlogs and resends go out from its forwarder thread. A lock guards the
    bookkeeping (and the store), and is never held while calling into paho, because paho holds its own
    lock while it runs `on_publish`.
    """

    def __init__(
        self,
        device_id: str,
        address: BrokerAddress,
        options: DeviceOptions | None = None,
        *,
        on_settled: Callable[[], None] | None = None,
        on_command: OnCommand | None = None,
        on_report_interval: OnReportInterval | None = None,
        store: SampleStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not is_device_id(device_id):
            raise ValueError(f"{device_id!r} is not a valid device id")
        self.device_id = device_id
        self.address = address
        self.options = options = options or DeviceOptions()
        self._on_settled, self._clock = on_settled, clock
        self._telemetry_topic = device_topic(device_id, TopicKind.TELEMETRY)
        self._events_topic = device_topic(device_id, TopicKind.EVENTS)
        self._status_topic = device_topic(device_id, TopicKind.STATUS)
        self._persisted_topic, self._rejected_topic = (
            device_topic(device_id, TopicKind.PERSISTED),
            device_topic(device_id, TopicKind.REJECTED),
        )
        self._cmd_topic, self._ack_topic, self._ota_topic = (
            device_topic(device_id, TopicKind.CMD),
            device_topic(device_id, TopicKind.CMD_ACK),
            device_topic(device_id, TopicKind.OTA),
        )
        self._on_command, self._wall_clock = on_command, wall_clock
        self.commands = CommandBook()
        self.firmware_version = options.firmware_version
        self._ack_rng = random.Random(f"acks:{device_id}")  # noqa: S311 - a simulated flaky link, not security
        self._config_topic, self._reported_topic = (
            device_topic(device_id, TopicKind.CONFIG),
            device_topic(device_id, TopicKind.CONFIG_REPORTED),
        )

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._store = (
            store
            if store is not None
            else open_store(options.store_dir, device_id, options.store_max_samples, now=wall_clock)
        )
        self._forwarder = Forwarder(
            self._store, persist_timeout_s=options.persist_timeout_s, batch_max_samples=options.batch_max_samples
        )
        self._outbox = Outbox()
        self._events = EventOutbox(persist_timeout_s=options.persist_timeout_s)
        self._acked, self._persisted = SeqLedger(), SeqLedger()
        self._rejected: deque[RejectedNotice] = deque(maxlen=REJECTED_KEPT)
        self._twin, self._on_report_interval = TwinState(), on_report_interval
        self._connected = False
        self._closing = False
        self._stopping = False
        self._ignore_persisted = False
        self._gone = False
        self._offline: MQTTMessageInfo | None = None
        self._forward_thread: threading.Thread | None = None
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
            ca_file = tls.ca_file or address.ca_file
            client.tls_set(ca_certs=ca_file, certfile=tls.cert_file, keyfile=tls.key_file)
        client.will_set(self._status_topic, _OFFLINE, qos=QOS_AT_LEAST_ONCE, retain=True)
        client.reconnect_delay_set(options.reconnect_min_s, options.reconnect_max_s)
        client.max_inflight_messages_set(options.max_inflight)
        # Unlimited on paho's side: the store bounds what is held, the forwarder's window what is on the wire.
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client

    # -- lifecycle ---------------------------------------------------------------------------------

    def connect(self) -> None:
        """Start the network thread (it connects, and reconnects after every loss, by itself) and the forwarder."""
        self._client.connect_async(
            self.address.host, self.address.port, keepalive=self.options.keepalive_s, clean_start=True
        )
        self._client.loop_start()
        if self._forward_thread is None:
            self._forward_thread = threading.Thread(
                target=self._forward, name=f"{self.device_id}-forwarder", daemon=True
            )
            self._forward_thread.start()

    @property
    def connected(self) -> bool:
        """Whether the broker accepted the current connection (as far as the device knows)."""
        with self._lock:
            return self._connected

    @property
    def boot(self) -> int:
        """The boot number the device's samples carry (kept in its store)."""
        with self._lock:
            return self._store.boot

    @property
    def next_seq(self) -> int:
        """The seq the device's next sample takes (kept in its store, so it survives restarts)."""
        with self._lock:
            return self._store.next_seq

    @property
    def saved_state(self) -> bytes | None:
        """The application state stored with the latest `send` that had one (kept in its store)."""
        with self._lock:
            return self._store.saved_state

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait until connected; False if `timeout_s` passed first."""
        return self._wait_for(lambda: self._connected, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Say `offline` (retained), disconnect cleanly, stop the threads and close the store.

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
        """Stop the forwarder and the network thread (it ends promptly after `disconnect`), close the store.

        What the store holds stays there: a device opened on the same store directory sends it again.
        """
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._forward_thread is not None:
            self._forward_thread.join()
        self._client.loop_stop()
        with self._lock:
            self._store.close()

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

    @property
    def gone(self) -> bool:
        """Whether the device left the network by `go_offline()` and has not come back."""
        with self._lock:
            return self._gone

    def go_offline(self) -> None:
        """Scenario: leave the network and stay off, with the broker publishing the Last Will (`offline`).

        Samples and events sent meanwhile wait in the store; `come_back()` reconnects and sends them.
        """
        with self._lock:
            if self._gone:
                return
            self._gone = True
            # From now on `send()` stores, even before paho's callback says the connection is gone.
            if self._connected:
                self._connected = False
                self._n.disconnects += 1
            self._changed.notify_all()
        reason = ReasonCode(PacketTypes.DISCONNECT, identifier=DISCONNECT_WITH_WILL)
        self._client.disconnect(reasoncode=reason)  # paho's network loop ends after it, reconnecting no more
        logger.info("%s: gone offline (scenario); the broker publishes its Last Will", self.device_id)

    def come_back(self) -> None:
        """Scenario: reconnect after `go_offline()`; the backlog goes out as after any reconnect."""
        with self._lock:
            if not self._gone:
                return
            self._gone = False
        self._client.loop_stop()  # the ended network loop's thread, joined so that a new one can start
        # paho 2.2's loop_start() makes a new wake-up socket pair without closing the old one: close it here.
        self._client._reset_sockets(sockpair_only=True)  # private: paho has no public way to close it
        self.connect()
        logger.info("%s: back (scenario); connecting", self.device_id)

    def ignore_persisted(self, ignore: bool = True) -> None:
        """Fault: while set, `persisted` replies are thrown away, as if the bridge's QoS 0 replies were lost."""
        with self._lock:
            self._ignore_persisted = ignore
        logger.info("%s: %s `persisted` replies (fault injected)", self.device_id, "ignoring" if ignore else "reading")

    # -- commands ----------------------------------------------------------------------------------

    def acknowledge(self, command_id: str, status: AckStatus, result: dict[str, Any] | None = None) -> None:
        """Answer a command on `cmd/ack` (QoS 1), lost or late as `DeviceOptions.flaky_acks` says."""
        result = result or {}
        self.commands.answered(command_id, status, result)
        flaky = self.options.flaky_acks
        delay = 0.0 if flaky is None else flaky.plan(self._ack_rng)
        if delay is None:
            logger.info("%s: answer %s to command %s lost (flaky mode)", self.device_id, status, command_id)
            return
        ack = CommandAck(id=command_id, status=status, result=result, ts=self._wall_clock())
        payload = msgspec.json.encode(ack)
        if delay > 0:
            timer = threading.Timer(delay, self._publish_ack, (payload,))
            timer.daemon = True
            timer.start()
        else:
            self._publish_ack(payload)

    def received_commands(self) -> list[ReceivedCommand]:
        """Every command this device received, in order: the device's own record."""
        return self.commands.received()

    def reboot(self, down_s: float = REBOOT_DOWN_S) -> int:
        """Restart as firmware does: the connection drops (the broker publishes the Last Will), and the
        device comes back `down_s` later with a new boot whose seq starts at zero. Samples of the old boot
        not yet confirmed stay in the store and are sent again. Blocks for `down_s`; returns the new boot."""
        self.go_offline()
        with self._lock:
            boot = self._store.reboot(self._wall_clock())
        time.sleep(down_s)
        self.come_back()
        logger.info("%s: rebooted into boot %d", self.device_id, boot)
        return boot

    def report_update(self, progress: OtaProgress, *, wait_s: float = 0.0) -> None:
        """Publish firmware update progress on `fleet/v1/{id}/ota` (QoS 1; paho holds it while offline).
        With `wait_s`, wait up to that long for the broker's acknowledgement: an updater about to restart
        lets its reports leave first, so that they arrive before those of the new boot."""
        stamped = msgspec.structs.replace(progress, ts=progress.ts or self._wall_clock())
        info = self._client.publish(self._ota_topic, msgspec.json.encode(stamped), qos=QOS_AT_LEAST_ONCE)
        if wait_s > 0:
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(wait_s)

    def _publish_ack(self, payload: bytes) -> None:
        # paho queues it while disconnected and sends it after the reconnect (QoS 1, in-flight window).
        self._client.publish(self._ack_topic, payload, qos=QOS_AT_LEAST_ONCE)

    def _receive_command(self, message: CommandMessage) -> None:
        receipt, record = self.commands.receive(message, self._wall_clock())
        if receipt == "expired":
            logger.info(
                "%s: command %s (%s) arrived after its expiry: refused", self.device_id, message.id, message.name
            )
            self.acknowledge(message.id, "expired", {"expires_at": message.expires_at.isoformat()})
            return
        if receipt == "again":
            self.acknowledge(message.id, record.status, record.result)  # the answer may have been lost
            return
        self.acknowledge(message.id, "received")
        if message.name == "ping":
            self.acknowledge(message.id, "succeeded", {"pong": self._wall_clock().isoformat()})
        elif self._on_command is None:
            self.acknowledge(message.id, "rejected", {"reason": f"this device does not obey {message.name!r}"})
        else:
            try:
                self._on_command(self, message)
            except Exception as exc:
                logger.exception("%s: command %s failed", self.device_id, message.name)
                self.acknowledge(message.id, "failed", {"reason": str(exc)[:200]})

    # -- telemetry ---------------------------------------------------------------------------------

    def send(self, samples: Sample | Sequence[Sample], *, state: bytes | None = None) -> None:
        """Store one sample, or several, and publish them now as one message if connected and not behind.

        Several samples go as one `TelemetryBatch`. Offline, or behind an older backlog, they wait in
        the store for the forwarder. `state`, the application's own (where a truck is), is stored with
        them, before anything is published: a restarted device continues from `saved_state`.
        """
        batch: Sequence[Sample] = (samples,) if isinstance(samples, Sample) else samples
        if not batch:
            return
        with self._lock:
            entry, dropped = self._forwarder.append(batch, send_now=self._connected, state=state)
            self._count_dropped(dropped)
            if entry is None:
                if not self._connected:
                    self._n.deferred += len(batch)
                self._changed.notify_all()  # the forwarder sends it when there is room
                return
            self._outbox.start([entry])
        self._transmit([entry])

    # -- events ------------------------------------------------------------------------------------

    def send_event(self, name: str, ts: datetime, data: dict[str, Any] | None = None) -> None:
        """Keep an event until the bridge confirms it, and publish it now if connected (else at the next connect)."""
        with self._lock:
            self._events.add(boot=self._store.boot, ts=ts, name=name, data=data or {})
            payloads = self._events.due(self._clock()) if self._connected else []
        self._publish_events(payloads)

    @property
    def events_unconfirmed(self) -> int:
        """Events sent (or waiting to be) that `persisted` has not confirmed yet."""
        with self._lock:
            return len(self._events)

    def wait_events_persisted(self, timeout_s: float) -> bool:
        """Wait until every event was confirmed on `persisted` (or refused); False on timeout."""
        return self._wait_for(lambda: len(self._events) == 0, timeout_s)

    def _publish_events(self, payloads: list[bytes]) -> None:
        """Hand event payloads to paho (called without the lock); their PUBACKs settle no telemetry."""
        for payload in payloads:
            info = self._client.publish(self._events_topic, payload, qos=QOS_AT_LEAST_ONCE)
            with self._lock:
                self._outbox.bind_untracked(info.mid)

    @property
    def in_flight(self) -> int:
        """Telemetry messages handed to the MQTT client and not yet acknowledged."""
        with self._lock:
            return self._outbox.in_flight_messages

    @property
    def buffered(self) -> int:
        """Samples in the store: not yet confirmed on `persisted` (nor refused, nor dropped)."""
        with self._lock:
            return len(self._store)

    def wait_acked(self, timeout_s: float) -> bool:
        """Wait until every stored sample was sent and nothing is in flight; False on timeout.

        Acknowledged is not persisted: see `wait_persisted`.
        """
        return self._wait_for(lambda: not self._outbox and not self._forwarder.unsent, timeout_s)

    def wait_persisted(self, timeout_s: float) -> bool:
        """Wait until the store is empty: everything confirmed on `persisted` (or refused, or dropped)."""
        return self._wait_for(lambda: len(self._store) == 0, timeout_s)

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

    @property
    def report_interval_s(self) -> int | None:
        """The report interval its twin set (None: none set; the fleet's rate, or a command's, applies)."""
        with self._lock:
            return self._twin.report_interval_s

    @property
    def config_version(self) -> int:
        """The twin version the device applied (0: none yet)."""
        with self._lock:
            return self._twin.version

    @property
    def config_applied(self) -> dict[str, Any]:
        """What the device applied of its twin, as it reported it."""
        with self._lock:
            return dict(self._twin.applied)

    def config_received(self) -> list[int]:
        """The twin versions delivered to the device on `config`, in order, applied or not."""
        with self._lock:
            return list(self._twin.received)

    def wait_config(self, version: int, timeout_s: float) -> bool:
        """Wait until the device applied twin `version` or a later one; False on timeout."""
        return self._wait_for(lambda: self._twin.version >= version, timeout_s)

    def stats(self) -> DeviceStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            oldest = None if self._stopping else self._store.oldest_ts()  # a stopped device's store is closed
            return DeviceStats(
                device_id=self.device_id,
                connected=self._connected,
                outbox=self._forwarder.unsent + self._outbox.in_flight_samples,
                in_flight_messages=self._outbox.in_flight_messages,
                buffered=len(self._store),
                persisted=len(self._persisted),
                oldest_unpersisted_age_s=0.0 if oldest is None else max(0.0, (utcnow() - oldest).total_seconds()),
                **dataclasses.asdict(self._n),
            )

    def _wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until `predicate` (evaluated under the lock) holds; False if `timeout_s` passed first."""
        with self._changed:
            return self._changed.wait_for(predicate, max(0.0, timeout_s))

    def _transmit(self, entries: list[OutboxEntry]) -> None:
        """Hand entries (started in the outbox) to paho in order. Called without the lock."""
        settled_early = False
        for i, entry in enumerate(entries):
            info = self._client.publish(self._telemetry_topic, entry.payload, qos=QOS_AT_LEAST_ONCE)
            with self._lock:
                if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                    # Not taken: the samples stay stored; these go first once there is room.
                    for rest in reversed(entries[i:]):
                        self._outbox.abandon(rest)
                        self._forwarder.not_taken(rest)
                    logger.warning("%s: MQTT client queue full; %d messages wait", self.device_id, len(entries) - i)
                    break
                # MQTT_ERR_NO_CONN still means taken: paho sends it after the next CONNACK.
                if entry.resend:
                    self._n.resent_unpersisted += entry.samples
                else:
                    self._n.published += entry.samples
                settled = self._outbox.bind(entry, info.mid)
                if settled is not None:
                    self._record(settled)
                    settled_early = True
        if settled_early and self._on_settled is not None:
            self._on_settled()

    def _record(self, settled: Settled) -> None:
        """Count a settled entry, hand it back to the forwarder and wake waiters. Called with the lock held."""
        entry = settled.entry
        if settled.failed:
            self._n.refused += entry.samples
            self._store_call(self._forwarder.discard, entry.keys)
        else:
            if not entry.resend:
                self._n.acked += entry.samples
                self._n.acked_readings += entry.readings
            for boot, seq in entry.keys:
                self._acked.add(boot, seq)
            self._forwarder.acked(entry, self._clock())
        self._changed.notify_all()

    def _count_dropped(self, dropped: int) -> None:
        if dropped:
            self._n.dropped += dropped
            logger.warning("%s: store full, dropped the %d oldest samples", self.device_id, dropped)

    def _store_call(self, call: Callable[[Any], int], arg: Any) -> int:
        """Run a store call from a paho callback: a store error is logged there, not raised into paho."""
        try:
            return call(arg)
        except StoreError as exc:
            logger.error("%s: %s", self.device_id, exc)
            return 0

    # -- forwarder thread --------------------------------------------------------------------------

    def _forward(self) -> None:
        """Publish backlogs and resends whenever connected with room in the window; sleep otherwise."""
        while True:
            with self._changed:
                while True:
                    if self._stopping:
                        return
                    entries = self._due_entries()
                    events = self._events.due(self._clock()) if self._connected else []
                    if entries or events:
                        break
                    self._changed.wait(FORWARDER_IDLE_WAIT_S if entries is None else self._idle_wait_s())
                if entries:
                    self._outbox.start(entries)
            if entries:
                self._transmit(entries)
            self._publish_events(events)

    def _due_entries(self) -> list[OutboxEntry] | None:
        """What the forwarder may publish now; None when the store failed. Called with the lock held."""
        room = self.options.max_inflight - self._outbox.in_flight_messages
        if not self._connected or room <= 0:
            return []
        try:
            return self._forwarder.take(self._clock(), messages=room)
        except StoreError as exc:
            logger.error("%s: %s; the forwarder retries in %g s", self.device_id, exc, FORWARDER_IDLE_WAIT_S)
            return None

    def _idle_wait_s(self) -> float:
        """How long the forwarder may sleep: until the next resend comes due, if it could send it then."""
        due = self._forwarder.next_due_at()
        if due is None or not self._connected or self._outbox.in_flight_messages >= self.options.max_inflight:
            return FORWARDER_IDLE_WAIT_S  # a connect or a PUBACK wakes it sooner
        return min(FORWARDER_IDLE_WAIT_S, max(0.0, due - self._clock()))

    # -- paho callbacks (network thread) -----------------------------------------------------------

    def _on_connect(
        self, client: Client, userdata: Any, flags: ConnectFlags, reason: ReasonCode, properties: Properties | None
    ) -> None:
        if reason.is_failure:
            logger.warning("%s: broker refused the connection: %s", self.device_id, reason)
            return
        online = msgspec.json.encode(Status(state="online", ts=utcnow()))
        status = client.publish(self._status_topic, online, qos=QOS_AT_LEAST_ONCE, retain=True)
        client.subscribe(
            [
                (self._persisted_topic, QOS_AT_LEAST_ONCE),
                (self._rejected_topic, QOS_AT_LEAST_ONCE),
                (self._cmd_topic, QOS_AT_LEAST_ONCE),
                (self._config_topic, QOS_AT_LEAST_ONCE),
            ]
        )
        with self._lock:
            self._outbox.bind_untracked(status.mid)
            self._events.reconnected()  # the forwarder sends them again
            self._connected = True
            self._n.connects += 1
            # paho resends these itself after this callback returns, with DUP set.
            resent = self._outbox.in_flight_samples
            self._n.resent += resent
            # Acknowledged but unconfirmed: the broker that acknowledged them may have lost them.
            awaiting = self._forwarder.reconnected()
            unsent = self._forwarder.unsent
            connects = self._n.connects
            self._changed.notify_all()
        if connects == 1:
            logger.info("%s: connected to %s; %d stored samples to send", self.device_id, self.address, unsent)
        else:
            logger.info(
                "%s: reconnected (connect #%d); paho resends %d in-flight samples, the store %d unconfirmed "
                "messages and %d unsent samples",
                self.device_id,
                connects,
                resent,
                awaiting,
                unsent,
            )

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
            closing = self._closing or self._gone
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
            if message.topic == self._cmd_topic:
                self._receive_command(_COMMAND.decode(message.payload))
            elif message.topic == self._persisted_topic:
                persisted = _PERSISTED.decode(message.payload)
                with self._lock:
                    if self._ignore_persisted:
                        return
                    self._persisted.update(persisted.ranges)
                    self._events.confirm(persisted.events)
                    now = self._clock()
                    self._store_call(lambda ranges: self._forwarder.confirm(ranges, now), persisted.ranges)
                    self._changed.notify_all()
            elif message.topic == self._config_topic:
                self._apply_config(client, message.payload)
            elif message.topic == self._rejected_topic:
                notice = _REJECTED.decode(message.payload)
                with self._lock:
                    self._rejected.append(notice)
                    self._n.rejected += 1
                    if notice.topic == self._events_topic:
                        if notice.sha256 is not None:
                            self._events.refuse(notice.sha256)
                    elif notice.boot is not None and notice.seq is not None:
                        # Refused by the bridge: resending cannot help, so it leaves the store.
                        self._store_call(self._forwarder.discard, [(notice.boot, notice.seq)])
                    self._changed.notify_all()
                logger.info("%s: bridge rejected seq %s: %s", self.device_id, notice.seq, notice.reason)
        except msgspec.DecodeError as exc:
            logger.warning(
                "%s: unreadable message on %s (%s): %.200r", self.device_id, message.topic, exc, message.payload
            )

    def _apply_config(self, client: Client, payload: bytes | bytearray) -> None:
        """Apply a newer twin document and publish, retained, what was applied (network thread)."""
        if not payload:
            return  # the retained document was cleared (the device was deleted): nothing to apply
        config = DESIRED_DECODER.decode(payload)
        with self._lock:
            interval_before = self._twin.report_interval_s
            outcome = self._twin.apply(config)
            interval = self._twin.report_interval_s
            self._changed.notify_all()
        if outcome is None:
            return
        if isinstance(outcome, str):
            logger.warning("%s: twin %s", self.device_id, outcome)
            return
        if interval != interval_before and self._on_report_interval is not None:
            self._on_report_interval(self, interval)
        info = client.publish(self._reported_topic, msgspec.json.encode(outcome), qos=QOS_AT_LEAST_ONCE, retain=True)
        with self._lock:
            self._outbox.bind_untracked(info.mid)  # its ack settles no telemetry
        logger.info("%s: applied twin version %d: %s", self.device_id, outcome.version, outcome.applied)
