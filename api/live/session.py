"""One WebSocket client of the live stream: its subscriptions, its outbox and the loops serving it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import msgspec
import psycopg
from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.devices.services import DeviceGroup, known_device_ids, read_states
from api.live.hub import LiveHub
from api.live.outbox import Outbox
from api.live.schemas import (
    ALL_DEVICES,
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    ErrorMessage,
    SnapshotMessage,
    Subscribe,
    SubscribedMessage,
    Unsubscribe,
    UnsubscribedMessage,
)

log = logging.getLogger(__name__)

MAX_SUBSCRIBED_DEVICES: Final = 10_000
SNAPSHOT_BATCH_DEVICES: Final = 500
CLOSE_TRY_AGAIN_LATER: Final = 1013  # RFC 6455 registry: the client is too slow, reconnect


class LiveSession:
    """Serves one accepted WebSocket until either side closes it.

    A receive loop applies subscribe/unsubscribe requests; a send loop is the only writer to the
    socket, so snapshots, acknowledgements and updates go out in order.

    With a `group` (a group-limited API key) only that group's devices are served: `"*"` means the
    group's devices at the time of the request, and a named device outside the group is answered like
    an unknown one (a `null` snapshot, then nothing).
    """

    def __init__(
        self, socket: WebSocket[Any, Any, Any], hub: LiveHub, redis: Redis, *, group: DeviceGroup | None = None
    ) -> None:
        self._socket = socket
        self._hub = hub
        self._redis = redis
        self._group = group
        self._outbox = Outbox()
        self._devices: set[str] = set()
        self._everything = False

    async def serve(self) -> None:
        """Run both loops; when one ends (disconnect, overflow, error) stop the other and unsubscribe."""
        receiver = asyncio.create_task(self._receive_loop(), name="live-receive")
        sender = asyncio.create_task(self._send_loop(), name="live-send")
        try:
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (receiver, sender):
                task.cancel()
            await asyncio.gather(receiver, sender, return_exceptions=True)
            self._hub.detach(self._outbox, self._devices)
        for task in done:
            task.result()  # an unexpected error of either loop surfaces here, in the handler

    async def _receive_loop(self) -> None:
        try:
            while True:
                text = await self._socket.receive_data("text")
                await self._handle(text)
        except WebSocketDisconnect:
            return

    async def _handle(self, text: str) -> None:
        try:
            request = CLIENT_MESSAGES.decode(text)
        except msgspec.DecodeError as exc:
            self._outbox.push(SERVER_MESSAGES.encode(ErrorMessage(f"invalid request: {exc}")))
        else:
            if isinstance(request, Subscribe):
                try:
                    await self._subscribe(request.devices)
                except RedisError as exc:
                    # The subscription stands; only the snapshot is missing. Tell the client, keep serving.
                    self._outbox.push(SERVER_MESSAGES.encode(ErrorMessage(f"snapshot unavailable: {exc}")))
                except psycopg.OperationalError as exc:
                    # The group's members could not be read: nothing was subscribed.
                    self._outbox.push(SERVER_MESSAGES.encode(ErrorMessage(f"device registry unavailable: {exc}")))
            else:
                self._unsubscribe(request)
        # Read the next request only once this one's replies are written: bounds the control backlog.
        await self._outbox.control_sent()

    async def _subscribe(self, requested: list[str]) -> None:
        everything = ALL_DEVICES in requested
        named = {device_id for device_id in requested if device_id != ALL_DEVICES}
        hidden: set[str] = set()
        if self._group is not None:
            visible = await self._group.among(named)
            hidden = named - visible
            named = visible
            if everything:
                # One more than allowed, so that a group too large for one connection is refused below.
                named |= await self._group.members(limit=MAX_SUBSCRIBED_DEVICES + 1)
                everything = False
        if len(self._devices | named) > MAX_SUBSCRIBED_DEVICES:
            message = f"at most {MAX_SUBSCRIBED_DEVICES} devices per connection; subscribe to {ALL_DEVICES!r} instead"
            self._outbox.push(SERVER_MESSAGES.encode(ErrorMessage(message)))
            return
        # Subscribe before reading the snapshot, so no change between the two is missed; a change that
        # races the snapshot is harmless because every field carries its own time and seq.
        if everything:
            self._everything = True
            self._hub.subscribe_all(self._outbox)
        self._devices |= named
        self._hub.subscribe(self._outbox, named)
        snapshot_ids = sorted(named)
        if everything:
            known = await known_device_ids(self._redis, limit=MAX_SUBSCRIBED_DEVICES)
            snapshot_ids = sorted(named | set(known))
        for device_id in sorted(hidden):
            self._outbox.push(SERVER_MESSAGES.encode(SnapshotMessage(device_id, None)))
        for start in range(0, len(snapshot_ids), SNAPSHOT_BATCH_DEVICES):
            states = await read_states(self._redis, snapshot_ids[start : start + SNAPSHOT_BATCH_DEVICES])
            for device_id, state in states.items():
                self._outbox.push(SERVER_MESSAGES.encode(SnapshotMessage(device_id, state)))
        self._outbox.push(SERVER_MESSAGES.encode(SubscribedMessage(requested)))

    def _unsubscribe(self, request: Unsubscribe) -> None:
        named = {device_id for device_id in request.devices if device_id != ALL_DEVICES}
        if self._group is not None and ALL_DEVICES in request.devices:
            # A limited connection's "*" was its group's devices, subscribed by name.
            named |= self._devices
        if ALL_DEVICES in request.devices:
            self._everything = False
            self._hub.unsubscribe_all(self._outbox)
        self._devices -= named
        self._hub.unsubscribe(self._outbox, named)
        if not self._everything:
            self._outbox.forget(device for device in self._outbox.pending_devices() if device not in self._devices)
        self._outbox.push(SERVER_MESSAGES.encode(UnsubscribedMessage(request.devices)))

    async def _send_loop(self) -> None:
        try:
            while True:
                batch = await self._outbox.take()
                if batch.overflowed:
                    log.warning("live client too slow: closing after %d conflated updates", self._outbox.conflated)
                    await self._socket.close(CLOSE_TRY_AGAIN_LATER, "too slow: reconnect and resubscribe")
                    return
                for message in batch.control:
                    await self._socket.send_data(message, "text")
                self._outbox.sent()
                for update in batch.updates:
                    await self._socket.send_data(update.message(), "text")
        except WebSocketDisconnect:
            return
