"""One WebSocket client of the live stream: its selection, its outbox and the loops serving it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec
import psycopg
from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.devices.services import known_device_ids, read_states
from api.live.cursor import StreamId, parse_cursor, stream_id
from api.live.event import LiveEvent
from api.live.history import expired, positions, read_after
from api.live.hub import LiveHub, Subscriber
from api.live.outbox import Outbox
from api.live.schemas import (
    ALL_DEVICES,
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    Auth,
    AuthMessage,
    ErrorMessage,
    HeartbeatMessage,
    ResetMessage,
    Resume,
    SnapshotMessage,
    Subscribe,
    SubscribedMessage,
    Unsubscribe,
    UnsubscribedMessage,
    selector_problem,
)
from api.live.selection import BBox, Selection, bbox_problem
from api.live.stream import parse_entry
from api.live.update import LiveUpdate
from api.live.watch import Ended, Watched
from models.state import GEO_KEY

if TYPE_CHECKING:  # api.auth imports the live package through api.backends
    from api.principal import Principal

Renewal = Callable[["Principal", str], "Principal | str"]
"""Checks a fresh token for a connection authorised as the given principal: the new principal, or why not."""

log = logging.getLogger(__name__)

MAX_SUBSCRIBED_DEVICES: Final = 10_000
MAX_BOXES: Final = 16
SNAPSHOT_BATCH_DEVICES: Final = 500
MAX_MESSAGE_CHARS: Final = 1_048_576  # 10,000 of the longest device ids fit; more is not a typo
MAX_BAD_MESSAGES_IN_A_ROW: Final = 20
CLOSE_POLICY_VIOLATION: Final = 1008  # RFC 6455: the client keeps sending what it was told is wrong
CLOSE_TRY_AGAIN_LATER: Final = 1013  # RFC 6455 registry: the client is too slow, reconnect
EARTH_RADIUS_KM: Final = 6371.0088


def _km_between(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


async def devices_inside(redis: Redis, box: BBox) -> set[str]:
    """Devices whose GEO-indexed position is inside `box`: a circle around it from Redis, then exact."""
    lon = (box.min_lon + box.max_lon) / 2
    lat = (box.min_lat + box.max_lat) / 2
    corners = [(x, y) for x in (box.min_lon, box.max_lon) for y in (box.min_lat, box.max_lat)]
    radius_km = max(_km_between(lon, lat, x, y) for x, y in corners) * 1.01 + 1
    found: Any = await redis.geosearch(
        GEO_KEY, longitude=lon, latitude=lat, radius=radius_km, unit="km", withcoord=True
    )
    inside: set[str] = set()
    for member, coordinates in found:
        member_lon, member_lat = coordinates
        if box.contains(float(member_lon), float(member_lat)):
            inside.add(member.decode() if isinstance(member, bytes) else str(member))
    return inside


class LiveSession:
    """Serves one accepted WebSocket until either side closes it.

    A receive loop applies requests; a send loop is the only writer to the socket, so snapshots,
    replays, acknowledgements and updates go out in order, and it sends a heartbeat when nothing else
    was sent for `hub.heartbeat_s`.

    With `group_limit` (a group-limited API key) only that group's devices are ever delivered: `"*"`
    means the group's devices, and a named device outside the group is answered like an unknown one
    (a `null` snapshot, then nothing).
    """

    def __init__(
        self,
        socket: WebSocket[Any, Any, Any],
        hub: LiveHub,
        redis: Redis,
        *,
        group_limit: str | None = None,
        since: StreamId | None = None,
        watched: Watched | None = None,
        renew: Renewal | None = None,
    ) -> None:
        self._socket = socket
        self._hub = hub
        self._redis = redis
        self._outbox = Outbox()
        self._subscriber = Subscriber(self._outbox, group_limit)
        self._since = since
        self._bad_in_a_row = 0
        self._last_sent: str | None = None
        self._watched = watched
        self._renew = renew

    async def serve(self) -> None:
        """Run both loops; when one ends (disconnect, overflow, abuse, error) stop the other and detach.

        When the connection's credential ends (`watched`), both loops stop and the socket is closed with
        the watch's code and reason (4401, 4403).
        """
        receiver = asyncio.create_task(self._receive_loop(), name="live-receive")
        sender = asyncio.create_task(self._send_loop(), name="live-send")
        tasks: set[asyncio.Task[Any]] = {receiver, sender}
        ender: asyncio.Task[Ended] | None = None
        if self._watched is not None:
            ender = asyncio.create_task(self._watched.wait(), name="live-credential")
            tasks.add(ender)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._hub.detach(self._subscriber)
        if ender is not None and ender in done:
            ended = ender.result()
            log.info("live connection closed: %s (%d)", ended.reason, ended.code)
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self._socket.close(ended.code, ended.reason)
            return
        for task in done:
            task.result()  # an unexpected error of either loop surfaces here, in the handler

    def _error(self, message: str) -> None:
        self._outbox.push(SERVER_MESSAGES.encode(ErrorMessage(message)))

    async def _receive_loop(self) -> None:
        try:
            while True:
                text = await self._socket.receive_data("text")
                if not await self._handle(text):
                    log.warning("live client closed after %d bad messages in a row", self._bad_in_a_row)
                    await self._outbox.control_sent()
                    await self._socket.close(CLOSE_POLICY_VIOLATION, "too many bad messages")
                    return
        except WebSocketDisconnect:
            return

    async def _handle(self, text: str) -> bool:
        """Apply one request; False when the client has sent too many bad ones in a row."""
        problem: str | None = None
        if len(text) > MAX_MESSAGE_CHARS:
            problem = f"message longer than {MAX_MESSAGE_CHARS} characters"
        else:
            try:
                request = CLIENT_MESSAGES.decode(text)
            except msgspec.DecodeError as exc:
                problem = f"invalid request: {exc}"
            else:
                problem = await self._apply(request)
        if problem is None:
            self._bad_in_a_row = 0
        else:
            self._bad_in_a_row += 1
            self._error(problem)
        # Read the next request only once this one's replies are written: bounds the control backlog.
        await self._outbox.control_sent()
        return self._bad_in_a_row < MAX_BAD_MESSAGES_IN_A_ROW

    def _reauthorise(self, request: Auth) -> str | None:
        if self._watched is None or self._renew is None:
            return "this connection takes no auth messages"
        renewed = self._renew(self._watched.principal, request.token)
        if isinstance(renewed, str):
            return renewed
        self._watched.principal = renewed
        expires_at = datetime.fromtimestamp(renewed.expires_at or 0, UTC).isoformat().replace("+00:00", "Z")
        self._outbox.push(SERVER_MESSAGES.encode(AuthMessage(expires_at)))
        return None

    async def _apply(self, request: Subscribe | Unsubscribe | Resume | Auth) -> str | None:
        if isinstance(request, Auth):
            return self._reauthorise(request)
        if isinstance(request, Resume):
            self._since = parse_cursor(request.cursor)
            return None if self._since is not None else "cursor is not a stream entry id"
        problem = selector_problem(request) or (bbox_problem(request.bbox) if request.bbox is not None else None)
        if problem is not None:
            return problem
        if isinstance(request, Unsubscribe):
            self._unsubscribe(request)
            return None
        try:
            return await self._subscribe(request)
        except RedisError as exc:
            # The subscription stands; its snapshot or replay is incomplete. Say so, keep serving; the
            # driver's text (host, port) goes to the log only.
            self._outbox.release()
            correlation = uuid.uuid4().hex
            log.warning("live snapshot failed [correlation_id=%s]: %s", correlation, exc)
            return f"snapshot unavailable: Redis did not answer; try again later (correlation_id {correlation})"

    async def _delta(self, request: Subscribe) -> tuple[Selection, set[str]] | str:
        """The selection a subscribe request adds, and the devices it names that the client may not see."""
        delta = Selection()
        hidden: set[str] = set()
        limit = self._subscriber.group_limit
        directory = self._hub.directory
        if request.group is not None or limit is not None:
            try:
                await directory.reload()
            except psycopg.OperationalError as exc:
                log.warning("device groups not reloaded for a subscribe request (%s); using the cached ones", exc)
        if request.devices is not None:
            delta.everything = ALL_DEVICES in request.devices
            delta.devices = {device for device in request.devices if device != ALL_DEVICES}
            if limit is not None:
                hidden = {device for device in delta.devices if directory.group_of(device) != limit}
                delta.devices -= hidden
            if len(self._subscriber.selection.devices | delta.devices) > MAX_SUBSCRIBED_DEVICES:
                return f"at most {MAX_SUBSCRIBED_DEVICES} devices per connection; subscribe to {ALL_DEVICES!r} instead"
        elif request.group is not None:
            delta.groups = {request.group}
        elif request.bbox is not None:
            if len(self._subscriber.selection.boxes) >= MAX_BOXES:
                return f"at most {MAX_BOXES} boxes per connection"
            box = BBox(*request.bbox)
            delta.boxes = {box: await devices_inside(self._redis, box)}
        return delta, hidden

    def _snapshot_ids(self, delta: Selection, known: Iterable[str]) -> list[str]:
        directory = self._hub.directory
        ids = set(delta.devices)
        for group in delta.groups:
            ids |= directory.members(group)
        for members in delta.boxes.values():
            ids |= members
        if delta.everything:
            ids |= set(known)
        limit = self._subscriber.group_limit
        if limit is not None:
            ids = {device for device in ids if directory.group_of(device) == limit}
        return sorted(ids)

    async def _subscribe(self, request: Subscribe) -> str | None:
        found = await self._delta(request)
        if isinstance(found, str):
            return found
        delta, hidden = found
        since = self._since
        gone = await expired(self._redis, since) if since is not None else None
        if gone is not None:
            self._outbox.push(SERVER_MESSAGES.encode(ResetMessage(gone.reason, gone.oldest)))
            since = self._since = None
        # From here to `upto`, no await: the selection changes and is re-indexed in one step.
        selection = self._subscriber.selection
        before = selection.copy()
        selection.everything = selection.everything or delta.everything
        selection.devices |= delta.devices
        selection.groups |= delta.groups
        for box, members in delta.boxes.items():
            selection.boxes.setdefault(box, set()).update(members)
        # Attach before reading snapshots or history, with no await in between, so that every entry after
        # `upto` reaches the outbox live and every entry up to it is in Redis to be read.
        if since is not None:
            self._outbox.hold()
            self._subscriber.floor = max(self._subscriber.floor, since)
        self._hub.attach(self._subscriber)
        upto = self._hub.position
        for device_id in sorted(hidden):
            self._outbox.push(SERVER_MESSAGES.encode(SnapshotMessage(device_id, None)))
        if since is not None:
            await self._replay(since, upto, delta, before)
            self._outbox.release()
        else:
            await self._snapshots(delta)
        self._outbox.push(SERVER_MESSAGES.encode(SubscribedMessage(request.devices, request.group, request.bbox)))
        return None

    async def _snapshots(self, delta: Selection) -> None:
        known: list[str] = []
        if delta.everything and self._subscriber.group_limit is None:
            known = await known_device_ids(self._redis, limit=MAX_SUBSCRIBED_DEVICES)
        elif delta.everything:
            known = sorted(self._hub.directory.members(self._subscriber.group_limit or ""))
        snapshot_ids = self._snapshot_ids(delta, known)
        for start in range(0, len(snapshot_ids), SNAPSHOT_BATCH_DEVICES):
            states = await read_states(self._redis, snapshot_ids[start : start + SNAPSHOT_BATCH_DEVICES])
            for device_id, state in states.items():
                self._outbox.push(SERVER_MESSAGES.encode(SnapshotMessage(device_id, state)))

    async def _replay(self, since: StreamId, upto: StreamId, delta: Selection, before: Selection) -> None:
        """Send the entries after `since` (up to `upto`) that the new selection matches and the previous
        one did not (those the client has), a page at a time, each page written before the next is read."""
        directory = self._hub.directory
        limit = self._subscriber.group_limit
        after = since
        while after < upto:
            page = await read_after(self._redis, after, upto=upto)
            if not page:
                return
            entries = [
                parsed
                for entry_id, fields in page
                if isinstance(parsed := parse_entry(entry_id, fields), LiveUpdate | LiveEvent)
            ]
            unplaced = [
                entry.device_id for entry in entries if isinstance(entry, LiveEvent) or entry.changes.position is None
            ]
            where = await positions(self._redis, unplaced) if delta.boxes or before.boxes else {}
            for entry in entries:
                group = directory.group_of(entry.device_id)
                if limit is not None and group != limit:
                    continue
                current = where.get(entry.device_id)
                if isinstance(entry, LiveEvent):
                    if delta.matches_device(entry.device_id, group, current) and not before.matches_device(
                        entry.device_id, group, current
                    ):
                        self._outbox.push(entry.message())
                        self._last_sent = entry.cursor
                elif delta.matches(entry, group, current) and not before.matches(entry, group, current):
                    self._outbox.push(entry.message().encode())
                    self._last_sent = entry.cursor
            after = stream_id(page[-1][0])
            await self._outbox.control_sent()

    def _unsubscribe(self, request: Unsubscribe) -> None:
        selection = self._subscriber.selection
        if request.devices is not None:
            if ALL_DEVICES in request.devices:
                selection.everything = False
            selection.devices -= set(request.devices)
        elif request.group is not None:
            selection.groups.discard(request.group)
        elif request.bbox is not None:
            selection.boxes.pop(BBox(*request.bbox), None)
        self._hub.attach(self._subscriber)
        directory = self._hub.directory
        self._outbox.forget(
            device
            for device in self._outbox.pending_devices()
            if not selection.covers(device, directory.group_of(device))
        )
        self._outbox.push(SERVER_MESSAGES.encode(UnsubscribedMessage(request.devices, request.group, request.bbox)))

    def _heartbeat(self) -> bytes:
        cursor = self._last_sent
        if self._outbox.idle:
            # Everything this instance read was offered here and written (or did not match): the client
            # may resume from the newest entry read, or from its own cursor if this reader lags behind it.
            cursor = str(max(self._hub.position, self._subscriber.floor))
        return SERVER_MESSAGES.encode(HeartbeatMessage(cursor))

    async def _send_loop(self) -> None:
        try:
            while True:
                try:
                    batch = await asyncio.wait_for(self._outbox.take(), self._hub.heartbeat_s)
                except TimeoutError:
                    await self._socket.send_data(self._heartbeat(), "text")
                    continue
                if batch.overflowed:
                    log.warning("live client too slow: closing after %d conflated updates", self._outbox.conflated)
                    await self._socket.close(CLOSE_TRY_AGAIN_LATER, "too slow: reconnect and resume")
                    return
                for message in batch.control:
                    await self._socket.send_data(message, "text")
                self._outbox.sent()
                for update, cursor in batch.updates:
                    await self._socket.send_data(update.message(cursor), "text")
                    self._last_sent = cursor
        except WebSocketDisconnect:
            return
