"""The API's one MQTT connection (aiomqtt): it publishes for HTTP devices and hears the bridge's replies.

One connection per API instance, opened by the app's lifespan and kept up by `MqttLink.run`, which owns
reconnecting: aiomqtt never reconnects by itself, so there is exactly one policy, this loop's, with
backoff from 0.1 s doubling up to `RETRY_MAX_S`, each failure logged and counted in `LinkStatus`.

Clean start and no session: the replies read here (`persisted`, `rejected`) are QoS 0 and matter only
to requests waiting right now. A reply missed while the link was down leaves its request unconfirmed
(504), and retrying that request is safe: the database dedupes by (device, boot, seq).

Only this module imports the MQTT client library; the rest of the API sees `publish` and callbacks
taking `(topic, payload)`: the constructor's for its own subscriptions, and one per `route(filter, ...)`
for each feature that listens too (the device twin's reports). `on_connect(callback)` runs a callback
after every (re)connect, once subscribed: what could not be published while the link was down goes then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import aiomqtt
from paho.mqtt.client import topic_matches_sub
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from config.broker_url import BrokerUrl

log = logging.getLogger(__name__)

RETRY_MIN_S: Final = 0.1
RETRY_MAX_S: Final = 5.0
CONNECT_TIMEOUT_S: Final = 10.0
KEEPALIVE_S: Final = 30
STOP_WAIT_S: Final = 1.0  # at stop, how long the link may take to disconnect
# QoS 1 publishes awaiting their PUBACK at once; more wait in paho's queue, in order.
INFLIGHT_MAX: Final = 200
# Every instance hears every device's replies (one per device per bridge batch): a burst beyond this
# many undelivered messages is dropped by aiomqtt (logged) rather than held without bound.
INCOMING_QUEUE_MAX: Final = 100_000
CLIENT_ID_PREFIX: Final = "fleetbridge-api-"

OnMessage = Callable[[str, bytes], None]
OnConnect = Callable[[], None]


class MqttUnavailableError(Exception):
    """The API cannot publish now: no connection to the broker, or the publish was not acknowledged."""


@dataclass(slots=True)
class LinkStatus:
    """What the link knows about its connection, for readiness and logs."""

    connected: bool = False
    connects: int = 0
    failures: int = 0
    last_error: str | None = None


class MqttLink:
    """One MQTT 5 connection: subscribes to `subscriptions` on every connect and publishes at QoS 1."""

    def __init__(self, url: str, *, subscriptions: Sequence[str], on_message: OnMessage) -> None:
        self._address = BrokerUrl.parse(url)
        self._subscriptions = tuple(subscriptions)
        self._on_message = on_message
        # Unique per instance: a second API with the same client id would end this one's connection.
        self._client_id = f"{CLIENT_ID_PREFIX}{uuid.uuid4().hex[:12]}"
        self._client: aiomqtt.Client | None = None
        self._routes: list[tuple[str, OnMessage]] = []
        self._on_connect: list[OnConnect] = []
        self.status = LinkStatus()

    def route(self, topic_filter: str, on_message: OnMessage) -> None:
        """Subscribe to `topic_filter` too (from the next connect), handing its messages to `on_message`."""
        self._routes.append((topic_filter, on_message))

    def on_connect(self, callback: OnConnect) -> None:
        """Call `callback` after every connect, once subscribed (it must not block: start work, not do it)."""
        self._on_connect.append(callback)

    @property
    def connected(self) -> bool:
        """True while a connection is up and subscribed."""
        return self._client is not None

    async def run(self) -> None:
        """Stay connected until cancelled, reconnecting with backoff after every loss."""
        delay = RETRY_MIN_S
        address = self._address
        while True:
            client = aiomqtt.Client(
                address.host,
                address.port,
                username=address.username,
                password=address.password,
                identifier=self._client_id,
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=True,
                keepalive=KEEPALIVE_S,
                timeout=CONNECT_TIMEOUT_S,
                tls_context=address.ssl_context(),
                max_inflight_messages=INFLIGHT_MAX,
                max_queued_incoming_messages=INCOMING_QUEUE_MAX,
            )
            # aiomqtt warns past 10 publishes awaiting their PUBACK; an NDJSON upload has hundreds, by design.
            client.pending_calls_threshold = INFLIGHT_MAX
            try:
                async with client:
                    filters = [*self._subscriptions, *(topic for topic, _ in self._routes)]
                    if filters:  # an empty SUBSCRIBE is a protocol error
                        await client.subscribe([(topic, 0) for topic in filters])
                    self._client = client
                    self.status.connected = True
                    self.status.connects += 1
                    delay = RETRY_MIN_S
                    log.info("MQTT connected to %s:%s as %s", address.host, address.port, self._client_id)
                    for callback in self._on_connect:
                        self._call(callback)
                    async for message in client.messages:
                        payload = message.payload
                        if isinstance(payload, bytes | bytearray):
                            self._deliver(message.topic.value, bytes(payload))
            except aiomqtt.MqttError as exc:
                self.status.failures += 1
                self.status.last_error = str(exc)
                log.warning(
                    "MQTT link to %s:%s down (%s); reconnecting in %.1f s", address.host, address.port, exc, delay
                )
            finally:
                self._client = None
                self.status.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _deliver(self, topic: str, payload: bytes) -> None:
        # A failing callback is a bug to log, not a reason to lose the connection for every other request.
        handlers = [on_message for topic_filter, on_message in self._routes if topic_matches_sub(topic_filter, topic)]
        for on_message in handlers or [self._on_message]:
            try:
                on_message(topic, payload)
            except Exception:
                log.exception("handling a message on %s failed", topic)

    @staticmethod
    def _call(callback: OnConnect) -> None:
        try:
            callback()
        except Exception:
            log.exception("a callback after connecting failed")

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        content_type: str | None,
        timeout_s: float,
        retain: bool = False,
        expiry_s: int | None = None,
    ) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK; `MqttUnavailableError` if that cannot be had.

        `expiry_s` becomes the MQTT 5 Message Expiry Interval: no broker delivers the message after it
        (commands must never arrive stale). `retain` keeps it as the topic's latest (a twin's desired state).

        aiomqtt does not pass the PUBACK's reason code on: a publish the broker's ACL refused (0x87) looks
        accepted here, and its request ends unconfirmed rather than refused.
        """
        client = self._client
        if client is None:
            raise MqttUnavailableError("the API is not connected to the MQTT broker")
        properties: Properties | None = None
        if content_type is not None or expiry_s is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if content_type is not None:
                properties.ContentType = content_type
            if expiry_s is not None:
                properties.MessageExpiryInterval = max(1, expiry_s)
        try:
            await client.publish(topic, payload, qos=1, retain=retain, properties=properties, timeout=timeout_s)
        except aiomqtt.MqttError as exc:
            raise MqttUnavailableError(f"publish to the MQTT broker failed: {exc}") from exc


@contextlib.asynccontextmanager
async def running(link: MqttLink) -> AsyncIterator[None]:
    """Run `link` in the background for the length of the block."""
    task = asyncio.create_task(link.run(), name="mqtt-link")
    try:
        yield
    finally:
        task.cancel()
        # A clean DISCONNECT waits for the broker; a stop must not wait longer than this for one.
        try:
            async with asyncio.timeout(STOP_WAIT_S):
                await asyncio.gather(task, return_exceptions=True)
        except TimeoutError:
            log.info("the MQTT link did not close within %.0f s at stop: left behind", STOP_WAIT_S)
