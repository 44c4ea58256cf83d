"""Handing commands to the broker, and ending the ones that ran out of time.

Each API instance runs a `Dispatcher`. A command is claimed with `FOR UPDATE SKIP LOCKED`, published at
QoS 1 with its Message Expiry Interval, and marked `sent` in the same transaction once the broker has
acknowledged it: two instances never send one command at once, and a command is `sent` only if the
broker took it. A command is sent only while its device is online (the database's presence), so
"sent" never means "waiting in a broker for a device that is away": one queued for an offline device
waits here, and goes when the device comes back, unless it expired first. A device that went away after
a command was sent and came back without answering gets it again (it obeys an id once).

Dangerous commands are sent once, by the request that made them, or not at all: never later.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from api.mqtt import MqttLink, MqttUnavailableError
from api.pool import Pool
from models.commands import TRANSITION_KEY, CommandMessage, expiry_interval_s
from models.topics import TopicKind, device_topic

log = logging.getLogger(__name__)

DISPATCH_BATCH: Final = 500
RETRY_MAX_S: Final = 5.0
# A dangerous command its request could not hand over (the process died in between) is failed after
# this long rather than sent later.
DANGEROUS_HANDOVER_S: Final = 10

_CLAIM_ONE = (
    "SELECT c.id::text, c.device_id, c.name, c.args, c.expires_at FROM commands c JOIN devices d ON d.id = c.device_id"
    " WHERE c.id = %s AND c.state = 'queued' AND c.expires_at > now() AND d.presence = 'online' AND NOT d.disabled"
    " FOR UPDATE OF c SKIP LOCKED"
)
# Queued (not dangerous) for an online device, or sent before the device's current connection began.
_CLAIM_DUE = (
    "SELECT c.id::text, c.device_id, c.name, c.args, c.expires_at FROM commands c JOIN devices d ON d.id = c.device_id"
    " WHERE c.state IN ('queued', 'sent') AND NOT c.dangerous AND c.expires_at > now()"
    " AND d.presence = 'online' AND NOT d.disabled"
    " AND (c.state = 'queued' OR d.presence_since > c.sent_at)"
    " ORDER BY c.created_at LIMIT %s FOR UPDATE OF c SKIP LOCKED"
)
_MARK_SENT = (
    "UPDATE commands SET state = 'sent', sent_at = now(), attempts = attempts + 1, updated_at = now()"
    " WHERE id = ANY(%s::uuid[])"
)
_SENT_EVENTS = (
    "INSERT INTO command_events (command_id, state) SELECT unnest(%s::uuid[]), 'sent'"
    f" ON CONFLICT {TRANSITION_KEY} DO NOTHING"
)
_FAIL_ONE = (
    "WITH f AS (UPDATE commands SET state = 'failed', finished_at = now(), updated_at = now(), result = %(detail)s"
    " WHERE id = %(id)s AND state = 'queued' RETURNING id)"
    " INSERT INTO command_events (command_id, state, detail) SELECT id, 'failed', %(detail)s FROM f"
    f" ON CONFLICT {TRANSITION_KEY} DO NOTHING"
)
# Ends what ran out of time, each with its transition, in one statement per kind of ending.
_EXPIRE = (
    "WITH x AS (UPDATE commands SET state = 'expired', finished_at = now(), updated_at = now()"
    " WHERE state IN ('queued', 'sent') AND expires_at <= now() RETURNING id)"
    f" INSERT INTO command_events (command_id, state) SELECT id, 'expired' FROM x ON CONFLICT {TRANSITION_KEY} DO NOTHING"
)
_NO_RESULT = (
    "WITH x AS (UPDATE commands SET state = 'failed', finished_at = now(), updated_at = now(), result = %(detail)s"
    " WHERE state = 'received' AND expires_at + make_interval(secs => %(grace)s) <= now() RETURNING id)"
    " INSERT INTO command_events (command_id, state, detail) SELECT id, 'failed', %(detail)s FROM x"
    f" ON CONFLICT {TRANSITION_KEY} DO NOTHING"
)
_UNSENT_DANGEROUS = (
    "WITH x AS (UPDATE commands SET state = 'failed', finished_at = now(), updated_at = now(), result = %(detail)s"
    " WHERE state = 'queued' AND dangerous AND created_at + make_interval(secs => %(after)s) <= now() RETURNING id)"
    " INSERT INTO command_events (command_id, state, detail) SELECT id, 'failed', %(detail)s FROM x"
    f" ON CONFLICT {TRANSITION_KEY} DO NOTHING"
)
_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """How the dispatcher works (from `config.CommandSettings`)."""

    interval_s: float
    publish_timeout_s: float
    result_grace_s: int


class Dispatcher:
    """Sends due commands and expires stale ones, every `interval_s`, until cancelled."""

    def __init__(self, pool: Pool, link: MqttLink | None, settings: DispatchSettings) -> None:
        self._pool = pool
        self._link = link
        self._settings = settings
        self.sent = 0

    @property
    def link_down(self) -> bool:
        """True when there is no broker connection to send on right now."""
        return self._link is None or not self._link.connected

    async def send_now(self, command_id: str) -> bool:
        """Hand one queued command to the broker now, if its device is online: True when it was sent.

        Raises `MqttUnavailableError` when the broker could not take it (the command stays queued).
        """
        link = self._link
        if link is None:
            raise MqttUnavailableError(
                "the API has no broker account (FLEETBRIDGE_API_MQTT_URL): commands cannot be sent"
            )
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(_CLAIM_ONE, (command_id,))
            row = await cur.fetchone()
            if row is None:
                return False
            await self._publish(link, row)
            await cur.execute(_MARK_SENT, ([row[0]],))
            await cur.execute(_SENT_EVENTS, ([row[0]],))
        self.sent += 1
        return True

    async def fail_unsent(self, command_id: str, reason: str) -> None:
        """Mark a queued command failed with `reason` (a dangerous one its request could not hand over)."""
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(_FAIL_ONE, {"id": command_id, "detail": Jsonb({"reason": reason})})

    async def run(self) -> None:
        """Dispatch and expire until cancelled; a failing database or broker is retried with backoff."""
        delay = self._settings.interval_s
        while True:
            try:
                await self.expire()
                sent = await self.dispatch_due()
                delay = self._settings.interval_s
            except (psycopg.Error, OSError) as exc:
                log.warning("commands not dispatched (%s); retrying in %.1f s", exc, delay)
                sent = 0
                delay = min(RETRY_MAX_S, delay * 2)
            if sent < DISPATCH_BATCH:
                await asyncio.sleep(delay)

    async def dispatch_due(self) -> int:
        """Send what is due now; the number sent."""
        link = self._link
        if link is None or not link.connected:
            return 0
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(_CLAIM_DUE, (DISPATCH_BATCH,))
            rows = await cur.fetchall()
            if not rows:
                return 0
            results = await asyncio.gather(*(self._publish(link, row) for row in rows), return_exceptions=True)
            sent = [row[0] for row, result in zip(rows, results, strict=True) if result is None]
            for result in results:
                if isinstance(result, MqttUnavailableError):
                    log.warning("a command was not sent: %s", result)
                elif isinstance(result, BaseException):
                    raise result
            if sent:
                await cur.execute(_MARK_SENT, (sent,))
                await cur.execute(_SENT_EVENTS, (sent,))
        self.sent += len(sent)
        return len(sent)

    async def expire(self) -> None:
        """End the commands that ran out of time: unsent or unanswered past their expiry, received but
        without a result past the grace after it, dangerous ones their request never handed over."""
        grace = self._settings.result_grace_s
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(_EXPIRE)
            await cur.execute(
                _NO_RESULT,
                {"grace": grace, "detail": Jsonb({"reason": f"no result from the device {grace} s after expiry"})},
            )
            await cur.execute(
                _UNSENT_DANGEROUS,
                {
                    "after": DANGEROUS_HANDOVER_S,
                    "detail": Jsonb(
                        {"reason": "not handed to the broker when asked; dangerous commands are never sent later"}
                    ),
                },
            )

    async def _publish(self, link: MqttLink, row: tuple[Any, ...]) -> None:
        command_id, device_id, name, args, expires_at = row
        now = datetime.now(UTC)
        message = CommandMessage(id=command_id, name=name, args=args, expires_at=expires_at)
        await link.publish(
            device_topic(device_id, TopicKind.CMD),
            _json.encode(message),
            content_type="application/json",
            timeout_s=self._settings.publish_timeout_s,
            expiry_s=expiry_interval_s(expires_at, now),
        )
