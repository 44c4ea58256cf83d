"""Notifications of alert changes: queued exactly once from `alert_events`, delivered with retries.

Queueing. Each round reads the alert changes after `notification_cursor` (in (xid, id) order, below the
snapshot's xmin, like the MQTT publisher), and in ONE transaction inserts a `notifications` row for each
(change, channel) its rule asks for and moves the cursor past them. A crash before COMMIT leaves both
as they were; after it, the rows are there and the cursor past them; the natural key (channel, alert
event) makes a repeat insert nothing. An advisory transaction lock lets one engine instance queue at a
time. So every change a rule asks for is queued once, whatever restarts.

Delivery. A round claims due rows (`FOR UPDATE SKIP LOCKED`, so instances share the work without
sending one twice at once), pushes each one's next attempt past the longest a send can take and counts
the attempt, commits, then sends them concurrently, and records each outcome: `sent`; or a retry after
`retry_base_s` × 2^(attempts − 1) (capped, with jitter so a receiver that was down is not hit by every
retry at once); or `dead` after `max_attempts`, kept with its last error (GET /api/v1/notifications
?state=dead; an operator may retry it). An engine that dies between sending and recording sends that
one again once its claim lapses: delivery is at least once, and `X-Fleetbridge-Delivery` (the row's id)
is the same on every attempt, so a receiver can drop a repeat.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any, Final

import httpx
import msgspec
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from config import NotifySettings
from engine.mail import compose, send_mail
from engine.stopping import sleep_unless_stopped
from engine.webhook import post_webhook
from models.rule_store import ALERT_NOTICES_AFTER

log = logging.getLogger(__name__)

QUEUE_LOCK: Final = (0x456E67, 0x6E71)  # ("Eng", "nq"): one instance queues at a time
EVENTS_PER_ROUND: Final = 500
CLAIM_PER_ROUND: Final = 32
POLL_S: Final = 0.25
RETRY_MAX_S: Final = 5.0
CLAIM_MARGIN_S: Final = 30.0  # a claimed row is retried this long after the send's own timeout

_CURSOR = "SELECT xid::text, id FROM notification_cursor FOR UPDATE"
_ADVANCE = "UPDATE notification_cursor SET xid = %s::xid8, id = %s"
_TARGETS = (
    "SELECT n.rule_id, n.channel_id, n.events FROM rule_notifications n"
    " JOIN notification_channels c ON c.id = n.channel_id AND c.deleted_at IS NULL WHERE n.rule_id = ANY(%s)"
)
_QUEUE = (
    "INSERT INTO notifications (channel_id, alert_event_id, alert_id, event, payload)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (channel_id, alert_event_id) DO NOTHING"
)
_CLAIM = (
    "UPDATE notifications SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => %(lease)s)"
    " WHERE id IN (SELECT id FROM notifications WHERE state = 'pending' AND next_attempt_at <= now()"
    " ORDER BY next_attempt_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
    " RETURNING id, channel_id, event, payload, attempts"
)
_CHANNELS = "SELECT id, kind, url, secret, recipients, deleted_at FROM notification_channels WHERE id = ANY(%s)"
_SENT = (
    "UPDATE notifications SET state = 'sent', sent_at = now(), last_error = NULL WHERE id = %s AND state = 'pending'"
)
_RETRY = (
    "UPDATE notifications SET next_attempt_at = now() + make_interval(secs => %s), last_error = %s"
    " WHERE id = %s AND state = 'pending'"
)
_DEAD = "UPDATE notifications SET state = 'dead', last_error = %s WHERE id = %s AND state = 'pending'"
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    channel_id: int
    event: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True, slots=True)
class _Channel:
    kind: str
    url: str | None
    secret: str | None
    recipients: list[str] | None
    removed: bool


def retry_delay(settings: NotifySettings, attempts: int, *, jitter: float) -> float:
    """Seconds before the next attempt after `attempts` failed ones: doubling from `retry_base_s`, capped
    at `retry_max_s`, times `jitter` (0.5 … 1.0 when drawn at random)."""
    doubled: float = settings.retry_base_s * 2.0 ** max(0, attempts - 1)
    return min(settings.retry_max_s, doubled) * jitter


class Notifier:
    """Queues and delivers notifications until stopped."""

    def __init__(self, database_url: str, settings: NotifySettings) -> None:
        self._database_url = database_url
        self._settings = settings
        self.queued = 0
        self.sent = 0
        self.dead = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; a lost database connection is retried with a capped backoff."""
        delay = POLL_S
        timeout = httpx.Timeout(self._settings.timeout_s)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            while not stop.is_set():
                try:
                    async with await psycopg.AsyncConnection.connect(
                        self._database_url, autocommit=True, application_name="fleetbridge-engine-notify"
                    ) as conn:
                        delay = POLL_S
                        while not stop.is_set():
                            queued = await self.queue_round(conn)
                            delivered = await self.deliver_round(conn, client)
                            if queued < EVENTS_PER_ROUND and delivered < CLAIM_PER_ROUND:
                                await sleep_unless_stopped(stop, POLL_S)
                except psycopg.Error as exc:
                    log.warning("notifications interrupted (%s); retrying in %.1f s", exc, delay)
                    await sleep_unless_stopped(stop, delay)
                    delay = min(RETRY_MAX_S, delay * 2)

    async def queue_round(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Queue the notifications of the next alert changes; return how many changes were read."""
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s) AS got", QUEUE_LOCK)
            locked = await cur.fetchone()
            if locked is None or not locked["got"]:
                return 0  # another instance is queueing
            await cur.execute(_CURSOR)
            cursor = await cur.fetchone()
            assert cursor is not None  # migration 0019 inserts the one row
            await cur.execute(
                ALERT_NOTICES_AFTER, {"xid": cursor["xid"], "id": cursor["id"], "limit": EVENTS_PER_ROUND}
            )
            changes = await cur.fetchall()
            if not changes:
                return 0
            await cur.execute(_TARGETS, (sorted({c["rule_id"] for c in changes}),))
            targets: dict[int, list[tuple[int, list[str]]]] = {}
            for row in await cur.fetchall():
                targets.setdefault(row["rule_id"], []).append((row["channel_id"], row["events"]))
            rows = []
            for change in changes:
                notice = {k: v for k, v in change.items() if k != "event_xid"}
                for channel_id, events in targets.get(change["rule_id"], ()):
                    if change["event"] in events:
                        payload = Jsonb(notice, dumps=lambda obj: _encode(obj).decode())
                        rows.append((channel_id, change["event_id"], change["alert_id"], change["event"], payload))
            if rows:
                await cur.executemany(_QUEUE, rows)
                self.queued += max(0, cur.rowcount)  # rows that were not queued already (natural key)
            last = changes[-1]
            await cur.execute(_ADVANCE, (last["event_xid"], last["event_id"]))
            return len(changes)

    async def deliver_round(self, conn: psycopg.AsyncConnection[Any], client: httpx.AsyncClient) -> int:
        """Send the notifications due now; return how many were attempted."""
        lease = self._settings.timeout_s + CLAIM_MARGIN_S
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_CLAIM, {"lease": lease, "limit": CLAIM_PER_ROUND})
            claimed = [_Claimed(**row) for row in await cur.fetchall()]
            if not claimed:
                return 0
            await cur.execute(_CHANNELS, (sorted({c.channel_id for c in claimed}),))
            channels = {
                row["id"]: _Channel(
                    row["kind"], row["url"], row["secret"], row["recipients"], row["deleted_at"] is not None
                )
                for row in await cur.fetchall()
            }
        outcomes = await asyncio.gather(*(self._send(client, item, channels[item.channel_id]) for item in claimed))
        async with conn.transaction(), conn.cursor() as cur:
            for item, error in zip(claimed, outcomes, strict=True):
                await self._record(cur, item, error)
        return len(claimed)

    async def _send(self, client: httpx.AsyncClient, item: _Claimed, channel: _Channel) -> str | None:
        if channel.removed:
            return "the channel was removed"
        if channel.kind == "webhook":
            assert channel.url is not None  # the table's CHECK
            assert channel.secret is not None
            body = _encode(item.payload)
            return await post_webhook(
                client, channel.url, channel.secret, delivery=item.id, event=item.event, body=body
            )
        message = compose(self._settings.smtp_from, channel.recipients or [], item.payload)
        message["X-Fleetbridge-Delivery"] = str(item.id)
        return await send_mail(self._settings.smtp_url, message, timeout_s=self._settings.timeout_s)

    async def _record(self, cur: psycopg.AsyncCursor[Any], item: _Claimed, error: str | None) -> None:
        if error is None:
            await cur.execute(_SENT, (item.id,))
            self.sent += 1
        elif item.attempts >= self._settings.max_attempts or error == "the channel was removed":
            await cur.execute(_DEAD, (error, item.id))
            self.dead += 1
            log.warning("notification %d dead after %d attempt(s): %s", item.id, item.attempts, error)
        else:
            delay = retry_delay(self._settings, item.attempts, jitter=random.uniform(0.5, 1.0))  # noqa: S311 - spreading retries, not a secret
            await cur.execute(_RETRY, (delay, error, item.id))
            log.info("notification %d failed (%s); attempt %d in %.1f s", item.id, error, item.attempts + 1, delay)
