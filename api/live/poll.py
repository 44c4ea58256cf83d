"""The polling fallback: the live updates after a cursor, read from the stream on request.

For clients that cannot keep a WebSocket open (proxies, batch jobs): the same selection rules and
the same messages, one per stream entry (never conflated), and `next_cursor` to continue from. A
request may wait (long-poll) up to `MAX_WAIT_S` for the first matching update.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

import msgspec
from redis.asyncio import Redis

from api.live.cursor import StreamId, stream_id
from api.live.directory import GroupDirectory
from api.live.event import LiveEvent
from api.live.history import expired, newest, positions, read_after
from api.live.hub import LiveHub
from api.live.schemas import LivePage
from api.live.selection import Selection
from api.live.stream import parse_entry
from api.live.update import LiveUpdate
from api.stopping import Stopping

MAX_WAIT_S: Final = 25
MAX_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 100
SCAN_MAX_ENTRIES: Final = 10_000  # entries examined per request, matching or not: bounds one request's work
RESCAN_S: Final = 2.0  # a waiting request looks at the stream at least this often


@dataclass(frozen=True, slots=True)
class PollRequest:
    """A checked polling request."""

    selection: Selection
    since: StreamId | None
    limit: int
    wait_s: float
    group_limit: str | None


async def _scan(
    redis: Redis, directory: GroupDirectory, request: PollRequest, after: StreamId
) -> tuple[list[msgspec.Raw], StreamId]:
    """Matching updates after `after`, and the id of the last entry examined."""
    found: list[msgspec.Raw] = []
    scanned = 0
    while len(found) < request.limit and scanned < SCAN_MAX_ENTRIES:
        page = await read_after(redis, after, count=min(request.limit * 4, SCAN_MAX_ENTRIES - scanned))
        if not page:
            break
        scanned += len(page)
        updates = [
            (entry_id, parsed)
            for entry_id, fields in page
            if isinstance(parsed := parse_entry(entry_id, fields), LiveUpdate | LiveEvent)
        ]
        unplaced = [
            update.device_id
            for _, update in updates
            if isinstance(update, LiveEvent) or update.changes.position is None
        ]
        where = await positions(redis, unplaced) if request.selection.boxes else {}
        for entry_id, update in updates:
            group = directory.group_of(update.device_id)
            if request.group_limit is not None and group != request.group_limit:
                continue
            current = where.get(update.device_id)
            if isinstance(update, LiveEvent):
                if request.selection.matches_device(update.device_id, group, current):
                    found.append(msgspec.Raw(update.message()))
            elif request.selection.matches(update, group, current):
                found.append(msgspec.Raw(update.message().encode()))
                if len(found) == request.limit:
                    # Continue right after the last update returned, not after the rest of the page.
                    return found, stream_id(entry_id)
        after = stream_id(page[-1][0])
    return found, after


async def poll(redis: Redis, hub: LiveHub, request: PollRequest, *, stopping: Stopping | None = None) -> LivePage:
    """The page for `request`: a reset, or updates after `since` (waiting up to `wait_s` for one, or
    until the process is `stopping`: the client polls again, from the cursor, at another instance).

    While it waits, a request holds no connection: it sleeps until this instance's stream reader has
    read something new (`LiveHub.wait_beyond`), then looks again, and at least every `RESCAN_S`.
    """
    directory = hub.directory
    await directory.reload_if_older(directory.refresh_s)
    if request.since is None:
        after = await newest(redis)
    else:
        gone = await expired(redis, request.since)
        if gone is not None:
            return LivePage(updates=[], next_cursor=str(await newest(redis)), reset=True)
        after = request.since
    deadline = time.monotonic() + request.wait_s
    while True:
        found, after = await _scan(redis, directory, request, after)
        remaining_s = deadline - time.monotonic()
        if found or remaining_s <= 0 or (stopping is not None and stopping.is_set):
            return LivePage(updates=found, next_cursor=str(after))
        # Wake as soon as anything is read; the scan then decides whether it matches. The rescan bound
        # covers a reader that is behind the cursor (a client of another instance) or reconnecting.
        await hub.wait_beyond(after, min(RESCAN_S, remaining_s))
