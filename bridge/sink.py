"""Write batches to PostgreSQL: COPY into a staging table, insert what is new, one COMMIT per batch.

Redelivered samples insert nothing twice (ON CONFLICT on the key `models.telemetry.SAMPLE_KEY`: a sample
is (device, boot, seq), so one of a new boot repeating an old boot's ts and seq is stored, and every
(boot, seq) a `persisted` reply lists is a row in `telemetry`). The rows actually
inserted are added to the time-bucket rollups in the same statement (`models.rollups`), so the rollups
stay exact: a duplicate never counts twice, a late sample lands in its old bucket. Where the rollups are
TimescaleDB continuous aggregates, the database maintains them and the plain INSERT is used. Device
events are inserted in the same transaction, stored once by `models.events.EVENT_KEY`. A batch that
fails on its data is split until the bad messages are isolated; those are dead-lettered and the rest
commits. A failure of the database itself is raised as `SinkUnavailableError` for the caller to retry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import msgspec
import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from bridge.decode import TELEMETRY_COLUMNS, TELEMETRY_TYPES, Decoded, PresenceUpdate, Rejection
from bridge.errors import SinkUnavailableError
from bridge.feed import write_feed
from models.commands import ACK_STATE, STATE_RANK, TRANSITION_KEY, CommandAck
from models.events import EVENT_KEY, StoredEvent, event_data_json
from models.rollups import ROLLUPS_MIGRATION, insert_and_roll_up
from models.state import DATABASE_REFUSAL
from models.telemetry import SAMPLE_KEY

log = logging.getLogger(__name__)

DEAD_LETTER_MAX_BYTES: Final = 64 * 1024
_COLUMNS = ", ".join(TELEMETRY_COLUMNS)
_JSONB_COLUMNS = tuple(i for i, kind in enumerate(TELEMETRY_TYPES) if kind == "jsonb")
_CREATE_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS telemetry_stage (LIKE telemetry INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_COPY_STAGE = f"COPY telemetry_stage ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_INSERT_NEW = (
    f"INSERT INTO telemetry ({_COLUMNS}) SELECT {_COLUMNS} FROM telemetry_stage ON CONFLICT {SAMPLE_KEY} DO NOTHING"
)
_INSERT_AND_ROLL_UP = insert_and_roll_up(TELEMETRY_COLUMNS, "telemetry_stage")
# Events are few next to samples: one statement from arrays, no staging table. A redelivered event
# inserts nothing; RETURNING names the events new to the database, the only ones announced live.
_INSERT_EVENTS = (
    "INSERT INTO events (device_id, ts, boot, seq, name, data, received_at)"
    " SELECT d, ts, b, s, n, j::jsonb, r FROM unnest(%s::text[], %s::timestamptz[], %s::int4[], %s::int8[],"
    " %s::text[], %s::text[], %s::timestamptz[]) AS u(d, ts, b, s, n, j, r)"
    f" ON CONFLICT {EVENT_KEY} DO NOTHING RETURNING device_id, ts, boot, seq, name, data, received_at"
)
# Command acknowledgements (few): each state a command reaches is recorded once (`command_events` is unique
# on (command, state)), and only for a command of the device that answers: one device cannot speak for
# another's commands. RETURNING names the states new to the database; only those can move a command on.
_RECORD_ACKS = (
    "INSERT INTO command_events (command_id, state, device_ts, detail)"
    " SELECT DISTINCT ON (u.id, u.state) u.id, u.state, u.ts, u.result::jsonb"
    " FROM unnest(%s::text[], %s::uuid[], %s::text[], %s::timestamptz[], %s::text[]) AS u(device_id, id, state, ts, result)"
    " JOIN commands c ON c.id = u.id AND c.device_id = u.device_id"
    " ORDER BY u.id, u.state"
    f" ON CONFLICT {TRANSITION_KEY} DO NOTHING RETURNING command_id, state, at, detail::text"
)
# Forward only (`models.commands.STATE_RANK`), terminal states never change; locks taken in id order.
_ADVANCE_COMMANDS = (
    "UPDATE commands c SET state = u.state, updated_at = now(),"
    " received_at = CASE WHEN u.state = 'received' THEN u.at ELSE coalesce(c.received_at, u.received_at) END,"
    " finished_at = CASE WHEN u.state = 'received' THEN c.finished_at ELSE u.at END,"
    " result = coalesce(u.result::jsonb, c.result)"
    " FROM (SELECT * FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::text[])"
    " AS v(id, state, at, received_at, result) ORDER BY id) AS u"
    " WHERE c.id = u.id AND c.state IN ('queued', 'sent', 'received')"
    " AND (c.state <> 'received' OR u.state <> 'received')"
)
# Firmware update progress: each report a `progress` transition of the device's own update command; the
# version a device runs is recorded from its `running` report (the newest by device time wins).
_RECORD_PROGRESS = (
    "INSERT INTO command_events (command_id, state, device_ts, detail)"
    " SELECT u.id, 'progress', u.ts, u.detail::jsonb"
    " FROM unnest(%s::text[], %s::uuid[], %s::timestamptz[], %s::text[]) WITH ORDINALITY AS u(device_id, id, ts, detail, n)"
    " JOIN commands c ON c.id = u.id AND c.device_id = u.device_id ORDER BY u.n"
)
_RUNNING_VERSION = (
    "UPDATE devices SET firmware_version = u.version, firmware_reported_at = u.ts"
    " FROM (SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS v(id, version, ts) ORDER BY id) AS u"
    " WHERE devices.id = u.id AND (devices.firmware_reported_at IS NULL OR devices.firmware_reported_at <= u.ts)"
)
# Rollups the sink keeps itself only where they are tables; their step's variant says so.
_ROLLUP_VARIANT = "SELECT variant FROM schema_migrations WHERE version = %s"
# The newest schema step the bridge needs: `devices.firmware_version` (0027), `commands` (0023) for
# acknowledgements, `device_state` (0012,
# `bridge.statestore`), the key `SAMPLE_KEY` (0011).
SCHEMA_REQUIRED: Final = 27
_SCHEMA_APPLIED = "SELECT max(version) FROM schema_migrations"
_INSERT_REJECTED = (
    "INSERT INTO rejected_messages (received_at, topic, device_id, reason, sample_index, seq,"
    " payload_sha256, payload, payload_size, boot) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (topic, payload_sha256, sample_index) DO NOTHING"
)
# Sorted ids keep concurrent bridge instances from deadlocking on the registry rows.
_UPSERT_DEVICES = (
    "INSERT INTO devices (id, last_seen) SELECT * FROM unnest(%s::text[], %s::timestamptz[])"
    " ON CONFLICT (id) DO UPDATE SET last_seen = GREATEST(devices.last_seen, EXCLUDED.last_seen)"
)
# Live statuses are ordered by when they arrived; a retained status replayed on subscribe only fills a gap.
# Presence updates only devices the registry knows (provisioned, or seen sending telemetry): a retained
# status of some unknown id must not invent registry rows. Live statuses are ordered by arrival; a
# retained status replayed on subscribe only fills a gap.
_PRESENCE_LIVE = (
    "UPDATE devices SET presence = u.presence, presence_source = u.source, presence_since = u.since"
    " FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[]) AS u(id, presence, source, since)"
    " WHERE devices.id = u.id AND (devices.presence_since IS NULL OR devices.presence_since <= u.since)"
)
_PRESENCE_FILL = (
    "UPDATE devices SET presence = u.presence, presence_source = u.source, presence_since = u.since"
    " FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[]) AS u(id, presence, source, since)"
    " WHERE devices.id = u.id AND devices.presence IS NULL"
)
# PostgreSQL's `devices.presence*` is the presence every route reads (Redis mirrors what these return).
# Telemetry is a sign of life: a device without presence, or one marked offline by heartbeat, is online
# again; an offline its own status declared stands. Runs after the batch's statuses, in its transaction.
# Each presence change is strictly newer than the one it replaces (`+ 1 ms`), so the copy in Redis,
# merged newer-wins, always ends at the same value.
_PRESENCE_REVIVE = (
    "UPDATE devices SET presence = 'online', presence_source = 'heartbeat',"
    " presence_since = GREATEST(u.seen, devices.presence_since + interval '1 millisecond')"
    " FROM unnest(%s::text[], %s::timestamptz[]) AS u(id, seen)"
    " WHERE devices.id = u.id AND (devices.presence IS NULL"
    " OR (devices.presence = 'offline' AND devices.presence_source = 'heartbeat'))"
    " RETURNING devices.id, devices.presence_source, devices.presence_since"
)
# Silence, decided in one statement that locks what it changes: a device whose row a batch holds (its
# telemetry being committed) is skipped, and one the sweep has locked waits for it, so telemetry and the
# sweep never interleave (no check-then-act race), and locks are taken in id order, as batches take
# them, so the two cannot deadlock. Online by heartbeat: silent past the cutoff. Online by status:
# only once it sent telemetry after that status and then fell silent (a device that only says `online`
# stays online until its Last Will).
_PRESENCE_SWEEP = (
    "UPDATE devices SET presence = 'offline', presence_source = 'heartbeat',"
    " presence_since = GREATEST(%(now)s, devices.presence_since + interval '1 millisecond')"
    " FROM (SELECT id FROM devices"
    " WHERE presence = 'online' AND last_seen < %(cutoff)s AND presence_since < %(cutoff)s"
    " AND (presence_source = 'heartbeat' OR last_seen >= presence_since)"
    " ORDER BY id FOR UPDATE SKIP LOCKED) AS silent"
    " WHERE devices.id = silent.id"
    " RETURNING devices.id, devices.presence_source, devices.presence_since"
)
# SQLSTATE classes that blame the batch's data rather than the database: 22 data exception,
# 23 integrity constraint violation, 54 program limit exceeded (a value too large).
_DATA_ERRORS: Final = (pg_errors.DataError, pg_errors.IntegrityError, pg_errors.ProgramLimitExceeded)
_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class WriteReport:
    """What one batch did to the database."""

    messages: int
    rows: int
    inserted: int
    rejected: int
    refused_by_database: list[Decoded]  # the dead letters written in their place
    refused_by_database_originals: list[Decoded]  # the messages as they came, none of their rows stored
    transactions: int
    revived: list[PresenceUpdate] = field(default_factory=list)  # devices its telemetry brought back online
    new_events: list[tuple[str, StoredEvent]] = field(default_factory=list)  # (device, event) stored for the first time


class PostgresTelemetrySink:
    """The durable path: one connection, one transaction per batch (or per split part)."""

    def __init__(self, url: str, *, abandon_after_s: float | None = None) -> None:
        self._url = url
        # A link that stalls mid-transaction leaves the server holding that transaction's row locks, and
        # the retry of the same batch would wait on them for as long as the dead link lasts: the server
        # ends a transaction whose client stays silent this long (the bridge never idles in one).
        self._abandon_after_ms = None if abandon_after_s is None else max(1, round(abandon_after_s * 1000))
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._rolls_up = False
        # Batches and the presence sweep run in different tasks on this one connection: one at a time,
        # or both reconnect at once (keeping one connection and leaking the other) and their
        # transactions interleave ("commit at the wrong nesting level").
        self._busy = asyncio.Lock()

    async def connect(self) -> None:
        """Open the connection and its staging table; raise `SinkUnavailableError` when unreachable."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=False, application_name="fleetbridge-bridge"
            )
        except psycopg.Error as exc:
            raise SinkUnavailableError(f"PostgreSQL unreachable: {exc}") from exc
        try:
            if self._abandon_after_ms is not None:
                await conn.execute(f"SET idle_in_transaction_session_timeout = {self._abandon_after_ms:d}")
            await conn.execute(_CREATE_STAGE)
            variant = await (await conn.execute(_ROLLUP_VARIANT, (ROLLUPS_MIGRATION,))).fetchone()
            applied = await (await conn.execute(_SCHEMA_APPLIED)).fetchone()
            await conn.commit()
        except BaseException as exc:
            # A server that accepted the connection and then failed (starting up, shutting down) or a stop
            # cancelling here: the connection is not kept, so it is closed, not left for the collector.
            conn.pgconn.finish()
            if isinstance(exc, psycopg.Error):
                raise SinkUnavailableError(f"PostgreSQL unreachable: {exc}") from exc
            raise
        if applied is None or applied[0] is None or applied[0] < SCHEMA_REQUIRED:
            await conn.close()
            # Retried like an unreachable database: the bridge waits, warning, until someone migrates.
            raise SinkUnavailableError(
                f"the database schema is older than this bridge (step {SCHEMA_REQUIRED} missing): run `fleet db migrate`"
            )
        self._conn = conn
        self._rolls_up = variant is not None and variant[0] == "plain"
        if variant is None:
            log.warning(
                "the time-bucket rollups do not exist (migration %d not applied): not maintained", ROLLUPS_MIGRATION
            )

    async def abort(self) -> None:
        """Drop the connection without waiting on the server (its link may be stalled): the server rolls
        back whatever was open; the next write reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.pgconn.finish()

    async def close(self) -> None:
        """Close the connection, if any."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def write(self, batch: Sequence[Decoded]) -> WriteReport:
        """Commit `batch`, isolating messages whose data the database refuses."""
        async with self._busy:
            return await self._write(batch)

    async def _write(self, batch: Sequence[Decoded]) -> WriteReport:
        if self._conn is None or self._conn.closed:
            await self.connect()
        refused: list[tuple[Decoded, Exception]] = []
        totals = [0, 0, 0]  # inserted, rejected, transactions
        revived: list[PresenceUpdate] = []
        new_events: list[tuple[str, StoredEvent]] = []
        await self._write_splitting(list(batch), refused, totals, revived, new_events)
        letters = [_with_db_reason(d, exc) for d, exc in refused]
        if letters:
            await self._dead_letter_refused(letters)
            totals[2] += 1
        return WriteReport(
            messages=len(batch),
            rows=sum(len(d.rows) for d in batch),
            inserted=totals[0],
            rejected=totals[1],
            refused_by_database=letters,
            refused_by_database_originals=[d for d, _ in refused],
            transactions=totals[2],
            revived=revived,
            new_events=new_events,
        )

    async def sweep_presence(self, *, cutoff: datetime, now: datetime) -> list[PresenceUpdate]:
        """Mark offline (by heartbeat) every online device silent since before `cutoff`; return those
        marked. One statement: a device whose telemetry is being committed meanwhile stays online."""
        async with self._busy:
            return await self._sweep_presence(cutoff=cutoff, now=now)

    async def _sweep_presence(self, *, cutoff: datetime, now: datetime) -> list[PresenceUpdate]:
        if self._conn is None or self._conn.closed:
            await self.connect()
        conn = self._conn
        assert conn is not None
        try:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(_PRESENCE_SWEEP, {"cutoff": cutoff, "now": now})
                rows = await cur.fetchall()
        except psycopg.Error as exc:
            await self._drop_connection()
            raise SinkUnavailableError(f"PostgreSQL presence sweep failed: {exc}") from exc
        return [_presence_update(device, "offline", source, since) for device, source, since in rows]

    async def _write_splitting(
        self,
        part: list[Decoded],
        refused: list[tuple[Decoded, Exception]],
        totals: list[int],
        revived: list[PresenceUpdate],
        new_events: list[tuple[str, StoredEvent]],
    ) -> None:
        try:
            inserted, rejected = await self._write_once(part, revived, new_events)
        except _DATA_ERRORS as exc:
            if len(part) == 1:
                log.warning("database refused message on %s: %s", part[0].topic, exc)
                refused.append((part[0], exc))
                return
            middle = len(part) // 2
            await self._write_splitting(part[:middle], refused, totals, revived, new_events)
            await self._write_splitting(part[middle:], refused, totals, revived, new_events)
            return
        totals[0] += inserted
        totals[1] += rejected
        totals[2] += 1

    async def _write_once(
        self, part: list[Decoded], revived: list[PresenceUpdate], new_events: list[tuple[str, StoredEvent]]
    ) -> tuple[int, int]:
        conn = self._conn
        assert conn is not None
        rejections = [r for d in part for r in d.rejections]
        now_online: list[PresenceUpdate] = []
        stored_events: list[tuple[str, StoredEvent]] = []
        try:
            async with conn.transaction(), conn.cursor() as cur:
                inserted = 0
                if any(d.rows for d in part):
                    async with cur.copy(_COPY_STAGE) as copy:
                        copy.set_types(list(TELEMETRY_TYPES))
                        for decoded in part:
                            for row in decoded.rows:
                                await copy.write_row(_jsonb_ready(row))
                    if self._rolls_up:
                        await cur.execute(_INSERT_AND_ROLL_UP)
                        counted = await cur.fetchone()
                        inserted = counted[0] if counted is not None else 0
                    else:
                        await cur.execute(_INSERT_NEW)
                        inserted = cur.rowcount
                    await write_feed(cur)
                if any(d.events for d in part):
                    await cur.execute(_INSERT_EVENTS, _event_params(part))
                    stored_events = [_stored_event(row) for row in await cur.fetchall()]
                if any(d.ack is not None for d in part):
                    await _record_acks(cur, part)
                if any(d.ota is not None for d in part):
                    await _record_progress(cur, part)
                if rejections:
                    await cur.executemany(_INSERT_REJECTED, [_rejection_params(r) for r in rejections])
                seen = await _upsert_devices(cur, part)
                await _update_presence(cur, part)
                now_online = await _revive_presence(cur, seen)
        except _DATA_ERRORS:
            raise
        except psycopg.Error as exc:
            await self._drop_connection()
            raise SinkUnavailableError(f"PostgreSQL write failed: {exc}") from exc
        except OSError as exc:
            await self._drop_connection()
            raise SinkUnavailableError(f"PostgreSQL connection lost: {exc}") from exc
        revived.extend(now_online)  # only once committed
        new_events.extend(stored_events)
        return inserted, len(rejections)

    async def _dead_letter_refused(self, refused: list[Decoded]) -> None:
        conn = self._conn
        assert conn is not None
        rows = [_rejection_params(r) for d in refused for r in d.rejections]
        try:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(_INSERT_REJECTED, rows)
        except _DATA_ERRORS:
            # Even a dead letter can be refused; retrying it would stall every message behind it.
            await self._dead_letter_one_by_one(rows)
        except psycopg.Error as exc:
            await self._drop_connection()
            raise SinkUnavailableError(f"PostgreSQL dead-letter write failed: {exc}") from exc

    async def _dead_letter_one_by_one(self, rows: list[tuple[Any, ...]]) -> None:
        conn = self._conn
        assert conn is not None
        for params in rows:
            try:
                async with conn.transaction(), conn.cursor() as cur:
                    await cur.execute(_INSERT_REJECTED, _minimal(params))
            except _DATA_ERRORS as exc:
                log.error("dead letter for %.200r refused by the database and dropped: %s", params[1], exc)
            except psycopg.Error as exc:
                await self._drop_connection()
                raise SinkUnavailableError(f"PostgreSQL dead-letter write failed: {exc}") from exc

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            except psycopg.Error:
                log.debug("ignoring error while closing a failed connection", exc_info=True)
            self._conn = None


async def _record_acks(cur: psycopg.AsyncCursor[Any], part: list[Decoded]) -> None:
    """Record the batch's command acknowledgements and move each command forward to the furthest state
    newly reached (a `received` and a `succeeded` in one batch end at `succeeded`, `received_at` kept)."""
    acks: list[tuple[str, CommandAck]] = [(d.device_id, d.ack) for d in part if d.ack is not None and d.device_id]
    columns: tuple[list[Any], ...] = ([], [], [], [], [])
    for device_id, ack in acks:
        for column, value in zip(
            columns, (device_id, ack.id, ACK_STATE[ack.status], ack.ts, _ack_detail(ack)), strict=True
        ):
            column.append(value)
    await cur.execute(_RECORD_ACKS, columns)
    furthest: dict[str, tuple[str, datetime, str | None]] = {}
    received: dict[str, datetime] = {}
    for command_id, state, at, detail in await cur.fetchall():
        key = str(command_id)
        if state == "received":
            received[key] = at
        current = furthest.get(key)
        if current is None or STATE_RANK[state] > STATE_RANK[current[0]]:
            furthest[key] = (state, at, detail)
    if not furthest:
        return
    ids = sorted(furthest)
    await cur.execute(
        _ADVANCE_COMMANDS,
        (
            ids,
            [furthest[i][0] for i in ids],
            [furthest[i][1] for i in ids],
            [received.get(i) for i in ids],
            [furthest[i][2] if furthest[i][0] != "received" else None for i in ids],
        ),
    )


async def _record_progress(cur: psycopg.AsyncCursor[Any], part: list[Decoded]) -> None:
    """Record the batch's firmware update progress reports, and the versions devices now run."""
    reports = [(d.device_id, d.ota, d.received_at) for d in part if d.ota is not None and d.device_id]
    await cur.execute(
        _RECORD_PROGRESS,
        (
            [device for device, _, _ in reports],
            [ota.command_id for _, ota, _ in reports],
            [ota.ts or received for _, ota, received in reports],
            [_json.encode(ota).decode() for _, ota, _ in reports],
        ),
    )
    running: dict[str, tuple[str, datetime]] = {}
    for device, ota, received in reports:
        ts = ota.ts or received
        if ota.stage == "running" and ota.version is not None and (device not in running or running[device][1] <= ts):
            running[device] = (ota.version, ts)
    if running:
        ids = sorted(running)
        await cur.execute(_RUNNING_VERSION, (ids, [running[i][0] for i in ids], [running[i][1] for i in ids]))


def _ack_detail(ack: CommandAck) -> str | None:
    """The acknowledgement's `result` as JSON text, with the device's word when it differs from the state."""
    detail = dict(ack.result)
    if ack.status in ("rejected",):
        detail.setdefault("status", ack.status)
    return _json.encode(detail).decode() if detail else None


async def _upsert_devices(cur: psycopg.AsyncCursor[Any], part: list[Decoded]) -> dict[str, datetime]:
    """Register the devices that sent telemetry or an event and advance their `last_seen`; return device ->
    newest receipt."""
    seen: dict[str, datetime] = {}
    for decoded in part:
        if decoded.stored and decoded.device_id is not None:
            last = seen.get(decoded.device_id)
            if last is None or decoded.received_at > last:
                seen[decoded.device_id] = decoded.received_at
    if seen:
        ids = sorted(seen)
        await cur.execute(_UPSERT_DEVICES, (ids, [seen[i] for i in ids]))
    return seen


async def _revive_presence(cur: psycopg.AsyncCursor[Any], seen: dict[str, datetime]) -> list[PresenceUpdate]:
    if not seen:
        return []
    ids = sorted(seen)
    await cur.execute(_PRESENCE_REVIVE, (ids, [seen[i] for i in ids]))
    rows = await cur.fetchall()
    return [_presence_update(device, "online", source, since) for device, source, since in rows]


def _presence_update(device: str, state: Literal["online", "offline"], source: str, since: datetime) -> PresenceUpdate:
    """A presence PostgreSQL decided, as the cache stores it: ordered by its time, like a live status."""
    kind: Literal["status", "heartbeat"] = "status" if source == "status" else "heartbeat"
    return PresenceUpdate(device, state, kind, since, int(since.timestamp() * 1000))


async def _update_presence(cur: psycopg.AsyncCursor[Any], part: list[Decoded]) -> None:
    newest: dict[str, PresenceUpdate] = {}
    for decoded in part:
        update = decoded.presence
        if update is not None:
            current = newest.get(update.device_id)
            if current is None or update.order_ms > current.order_ms:
                newest[update.device_id] = update
    for statement, updates in (
        (_PRESENCE_LIVE, [u for u in newest.values() if u.order_ms > 1]),
        (_PRESENCE_FILL, [u for u in newest.values() if u.order_ms <= 1]),
    ):
        if updates:
            updates.sort(key=lambda u: u.device_id)
            await cur.execute(
                statement,
                (
                    [u.device_id for u in updates],
                    [u.state for u in updates],
                    [u.source for u in updates],
                    [u.since for u in updates],
                ),
            )


def _event_params(part: list[Decoded]) -> tuple[list[Any], ...]:
    """The batch's events as the column arrays `_INSERT_EVENTS` unnests."""
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
    for decoded in part:
        for event in decoded.events:
            values = (
                decoded.device_id,
                event.ts,
                event.boot,
                event.seq,
                event.name,
                event_data_json(event),
                decoded.received_at,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
    return columns


def _stored_event(row: tuple[Any, ...]) -> tuple[str, StoredEvent]:
    device_id, ts, boot, seq, name, data, received_at = row
    return device_id, StoredEvent(seq=seq, ts=ts, boot=boot, name=name, data=data, received_at=received_at)


def _jsonb_ready(row: tuple[Any, ...]) -> tuple[Any, ...]:
    if row[_JSONB_COLUMNS[0]] is None and row[_JSONB_COLUMNS[1]] is None:
        return row
    values = list(row)
    for index in _JSONB_COLUMNS:
        if values[index] is not None:
            values[index] = Jsonb(values[index], dumps=lambda obj: _json.encode(obj).decode())
    return tuple(values)


def _rejection_params(rejection: Rejection) -> tuple[Any, ...]:
    payload = rejection.payload
    return (
        rejection.received_at,
        rejection.topic,
        rejection.device_id,
        rejection.reason,
        rejection.index,
        rejection.seq,
        hashlib.sha256(payload).digest(),
        payload[:DEAD_LETTER_MAX_BYTES],
        len(payload),
        rejection.boot,
    )


def _minimal(params: tuple[Any, ...]) -> tuple[Any, ...]:
    """A dead letter cut down to what any row can hold: short topic and reason, no device id, seq or boot."""
    received_at, topic, _device, reason, index, _seq, digest, payload, size, _boot = params
    return (received_at, str(topic)[:512], None, str(reason)[:2000], index, None, digest, payload, size, None)


def _with_db_reason(decoded: Decoded, exc: Exception) -> Decoded:
    """The message as one dead letter: the database refused it, so none of its rows are stored."""
    reason = f"{DATABASE_REFUSAL}{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    rejection = Rejection(decoded.topic, decoded.device_id, reason, decoded.payload, decoded.received_at)
    return Decoded(
        decoded.device_id,
        decoded.topic,
        decoded.payload,
        decoded.received_at,
        rejections=[*decoded.rejections, rejection],
    )
