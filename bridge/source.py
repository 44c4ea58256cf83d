"""The MQTT adapter: the only module that knows the MQTT client library (gmqtt).

gmqtt, with `optimistic_acknowledgement=False`, runs each message's async handler as a task and sends the
PUBACK, with the reason code the handler returns, when that task finishes: the bridge's handler returns
only after the COMMIT holding the message, so acknowledgement follows durability.

Reconnecting is owned here, not by gmqtt: each connection gets a fresh client object. A handler that
finishes after its connection died then acknowledges into that dead connection, never into the next
one, where the broker may already have reused the packet id for a message not yet committed.

gmqtt sends a PUBACK with a reason code but never with properties: a refusal's reason string (MQTT 5
property 0x1F) is added here, by `_OneConnectionClient`, which writes that one PUBACK itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTCommands, MQTTv50
from gmqtt.mqtt.property import Property
from gmqtt.mqtt.utils import pack_variable_byte_integer

from bridge.errors import BridgeError
from bridge.message import Acknowledgement, RawMessage
from config.broker_url import BrokerUrl, BrokerUrlError

log = logging.getLogger(__name__)

Handler = Callable[[RawMessage], Awaitable[Acknowledgement]]
CONNECT_TIMEOUT_S = 10.0
# A reason string is for humans and logs: kept short, so a PUBACK stays far below any broker's packet limit.
PUBACK_REASON_MAX_BYTES = 512
_REASON_STRING = Property.factory(name="reason_string")


class _ReasonCode(int):
    """A PUBACK reason code that carries its reason string through gmqtt, which checks and passes on
    the code as an int, to `_OneConnectionClient._send_command_with_mid`."""

    reason: str | None

    def __new__(cls, code: int, reason: str | None) -> _ReasonCode:
        value = super().__new__(cls, code)
        value.reason = reason
        return value


def puback_with_reason(mid: int, code: int, reason: str) -> bytes:
    """An MQTT 5 PUBACK with a reason code and a Reason String property (cut to whole UTF-8 characters)."""
    text = reason.encode("utf-8")[:PUBACK_REASON_MAX_BYTES].decode("utf-8", "ignore")
    properties = bytes(_REASON_STRING.dumps(text))
    variable = mid.to_bytes(2, "big") + bytes([code]) + bytes(pack_variable_byte_integer(len(properties)))
    body = variable + properties
    return bytes([MQTTCommands.PUBACK]) + bytes(pack_variable_byte_integer(len(body))) + body


class _OneConnectionClient(gmqtt.Client):  # type: ignore[misc]
    """A gmqtt client that never reconnects by itself; it reports the loss and the source starts anew."""

    def __init__(self, *args: Any, generation: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lost = asyncio.Event()
        self.generation = generation
        self.inflight = 0
        self.paused = False
        self._reads_allowed = asyncio.Event()
        self._reads_allowed.set()

    async def reconnect(self, delay: bool = False) -> None:
        self.lost.set()

    def _send_command_with_mid(self, cmd: int, mid: int, dup: bool, reason_code: int = 0) -> None:
        """gmqtt's PUBACK path; a refusal with a reason string on an MQTT 5 connection is written here."""
        reason = getattr(reason_code, "reason", None)
        protocol = getattr(getattr(self, "_connection", None), "_protocol", None)
        if cmd != MQTTCommands.PUBACK or reason is None or protocol is None or protocol.proto_ver != MQTTv50:
            super()._send_command_with_mid(cmd, mid, dup, reason_code=int(reason_code))
            return
        protocol.write_data(puback_with_reason(mid, int(reason_code), reason))

    def gate_reads(self) -> None:
        """Route the connection's socket reads through a gate that `set_reading` opens and closes.

        gmqtt has no public flow control, and pausing its transport directly does not hold: its
        StreamReader resumes the transport whenever the read loop drains it. Holding the read loop
        instead lets the reader's buffer fill, whereupon the reader pauses the transport and TCP
        pushes back on the broker. gmqtt is reached here, in the one module that knows the library.
        """
        protocol = getattr(getattr(self, "_connection", None), "_protocol", None)
        if protocol is None:
            return
        original = protocol.read
        gate = self._reads_allowed

        async def gated_read(n: int = -1) -> bytes:
            # Let the handlers of the messages just parsed start, so they count before the next read.
            await asyncio.sleep(0)
            await gate.wait()
            data: bytes = await original(n)
            return data

        protocol.read = gated_read

    def set_reading(self, enabled: bool) -> None:
        """Hold or release the reading of further messages from the broker."""
        if enabled:
            self._reads_allowed.set()
        else:
            self._reads_allowed.clear()
        self.paused = not enabled


@dataclass(slots=True)
class SourceStatus:
    """What the source knows about its connection, for stats and tests."""

    connects: int = 0
    session_present: bool | None = None
    connected: bool = False


class MqttSource:
    """Subscribes with a persistent session and hands every message to the bridge's handler."""

    def __init__(
        self,
        *,
        url: str,
        client_id: str,
        subscriptions: list[str],
        receive_maximum: int,
        session_expiry_s: int,
        keepalive_s: int,
        retry_max_s: float,
        high_water: int,
        on_connection_lost: Callable[[int], None] | None = None,
    ) -> None:
        try:
            self._address = BrokerUrl.parse(url)
        except BrokerUrlError as exc:
            raise BridgeError(str(exc)) from None
        # Messages held at once before reading pauses. Receive Maximum should bound this already,
        # but Mosquitto 2.0.11 sends past it when a session with a backlog reconnects.
        self._high_water = high_water
        self.on_connection_lost = on_connection_lost
        self._generation = 0
        self._client_id = client_id
        self._subscriptions = subscriptions
        self._receive_maximum = receive_maximum
        self._session_expiry_s = session_expiry_s
        self._keepalive_s = keepalive_s
        self._retry_max_s = retry_max_s
        self._client: _OneConnectionClient | None = None
        self._handler: Handler | None = None
        self.status = SourceStatus()
        self.connected = asyncio.Event()

    async def run(self, handler: Handler, stop: asyncio.Event) -> None:
        """Stay connected until `stop` is set, reconnecting with backoff after every loss."""
        self._handler = handler
        delay = 0.1
        while not stop.is_set():
            self._generation += 1
            client = self._new_client()
            try:
                # A broker that accepts TCP but never answers CONNACK must not hang the bridge.
                await asyncio.wait_for(
                    client.connect(
                        self._address.host,
                        self._address.port,
                        ssl=self._address.ssl_context() or False,
                        keepalive=self._keepalive_s,
                        version=MQTTv50,
                    ),
                    timeout=CONNECT_TIMEOUT_S,
                )
            except (TimeoutError, OSError, gmqtt.MQTTConnectError) as exc:
                log.warning(
                    "MQTT connect to %s:%s failed: %s; retrying in %.1f s",
                    self._address.host,
                    self._address.port,
                    exc,
                    delay,
                )
                await _close_quietly(client)
                await _wait(stop, delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            delay = 0.1
            client.gate_reads()
            self._client = client
            self.status.connects += 1
            self.status.connected = True
            self.connected.set()
            client.subscribe([gmqtt.Subscription(topic, qos=1) for topic in self._subscriptions])
            log.info(
                "MQTT connected to %s:%s as %s (session present: %s)",
                self._address.host,
                self._address.port,
                self._client_id,
                self.status.session_present,
            )
            lost = asyncio.ensure_future(client.lost.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
            lost.cancel()
            stopping.cancel()
            self.connected.clear()
            self.status.connected = False
            if not stop.is_set():
                log.warning("MQTT connection lost; reconnecting")
                self._client = None
                await _close_quietly(client)
                if self.on_connection_lost is not None:
                    # What that connection delivered and nobody committed yet comes again on the next.
                    self.on_connection_lost(client.generation)

    async def disconnect(self) -> None:
        """Close the connection cleanly (the session stays on the broker)."""
        client, self._client = self._client, None
        self.connected.clear()
        self.status.connected = False
        if client is not None:
            await _close_quietly(client)

    def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> bool:
        """Publish if connected; False when it could not be sent (the caller decides what that means).

        QoS 1 publishes hold a packet id until the broker's PUBACK, and the broker grants only its
        Receive Maximum of them: a caller publishing per device per batch should use QoS 0.
        """
        client = self._client
        if client is None or client.lost.is_set():
            return False
        try:
            client.publish(topic, payload, qos=qos, retain=retain)
        except (OverflowError, OSError) as exc:  # gmqtt: no packet id left; the transport: closed
            log.debug("publish to %s dropped: %s", topic, exc)
            return False
        return True

    def _new_client(self) -> _OneConnectionClient:
        client = _OneConnectionClient(
            self._client_id,
            generation=self._generation,
            clean_session=False,
            optimistic_acknowledgement=False,
            session_expiry_interval=self._session_expiry_s,
            receive_maximum=self._receive_maximum,
        )
        if self._address.username is not None:
            client.set_auth_credentials(self._address.username, self._address.password)
        client.on_message = self._on_message
        client.on_connect = self._on_connect
        return client

    def _on_connect(self, client: Any, flags: int, rc: int, properties: dict[str, Any]) -> None:
        self.status.session_present = bool(flags)

    async def _on_message(
        self, client: _OneConnectionClient, topic: str, payload: bytes, qos: int, properties: dict[str, Any]
    ) -> int:
        handler = self._handler
        assert handler is not None
        client.inflight += 1
        if client.inflight >= self._high_water and not client.paused:
            log.info("%d messages held: pausing reads until commits catch up", client.inflight)
            client.set_reading(False)
        try:
            acknowledgement = await handler(self._wrap(client, topic, payload, properties))
            return _ReasonCode(acknowledgement.code, acknowledgement.reason)
        finally:
            client.inflight -= 1
            if client.paused and client.inflight <= self._high_water // 2:
                client.set_reading(True)

    def _wrap(self, client: _OneConnectionClient, topic: str, payload: bytes, properties: dict[str, Any]) -> RawMessage:
        content = properties.get("content_type")
        content_type = content[0] if isinstance(content, list) and content else content
        return RawMessage(
            topic=topic,
            payload=payload,
            content_type=content_type if isinstance(content_type, str) else None,
            received_at=datetime.now(UTC),
            dup=bool(properties.get("dup")),
            retain=bool(properties.get("retain")),
            generation=client.generation,
        )


async def _close_quietly(client: _OneConnectionClient) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), timeout=2)
    except (TimeoutError, OSError, AttributeError, gmqtt.MQTTConnectError):
        log.debug("ignoring error while closing an MQTT connection", exc_info=True)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
