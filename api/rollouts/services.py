"""Rollouts in PostgreSQL: started (devices assigned to their waves, the first wave's updates made in the
same transaction), read with their waves' counts, advanced, and stopped.

Advancing is one transaction per running rollout, its row locked with SKIP LOCKED: any API instance may
advance any rollout, and no two at once. A wave's failures are counted as its updates end: once more than
the threshold of the wave has failed (failed or expired), the rollout stops — even before the rest of the
wave finishes — and the next wave is never started. A wave that ends within the threshold starts the next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from psycopg import AsyncCursor
from psycopg.rows import dict_row

from api.commands.services import NewCommand, insert_command_in
from api.firmware.links import FirmwareBackend, update_args
from api.firmware.schemas import FirmwareImage
from api.pool import Pool
from api.rollouts.schemas import Rollout, RolloutPost, WaveCounts

ADVANCE_BATCH: Final = 20
_ROLLOUT = (
    "SELECT r.id, r.image_id, i.version, r.group_name AS group, r.first_wave_pct, r.failure_threshold_pct,"
    " r.state, r.wave, r.reason, r.created_at, r.created_by, r.finished_at"
    " FROM rollouts r JOIN firmware_images i ON i.id = r.image_id"
)
_WAVES = (
    "SELECT rd.wave, count(*) AS devices,"
    " count(*) FILTER (WHERE rd.command_id IS NULL AND NOT rd.already) AS pending,"
    " count(*) FILTER (WHERE c.state IN ('queued', 'sent', 'received')) AS in_progress,"
    " count(*) FILTER (WHERE c.state = 'succeeded') AS succeeded,"
    " count(*) FILTER (WHERE c.state IN ('failed', 'expired', 'cancelled')) AS failed,"
    " count(*) FILTER (WHERE rd.already) AS already"
    " FROM (SELECT *, (command_id IS NULL AND device_id IN"
    "   (SELECT id FROM devices WHERE firmware_version = %(version)s)) AS already"
    "   FROM rollout_devices WHERE rollout_id = %(id)s) rd"
    " LEFT JOIN commands c ON c.id = rd.command_id GROUP BY rd.wave ORDER BY rd.wave"
)
# The group's devices of the image's kind, not disabled, in a fixed order (by a hash of their id, so
# that a first wave is a spread of the group rather than its alphabetical head).
_MEMBERS = "SELECT id FROM devices WHERE group_name = %s AND kind = %s AND NOT disabled ORDER BY md5(id), id"


@dataclass(frozen=True, slots=True)
class NoDevices:
    """The group has no device the image is for."""

    group: str
    kind: str


async def start_rollout(
    pool: Pool, backend: FirmwareBackend, image: FirmwareImage, post: RolloutPost, *, who: str, link_base: str
) -> int | NoDevices:
    """Assign the group's devices to waves and make the first wave's updates; the rollout's id."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute(_MEMBERS, (post.group, image.kind))
        members = [str(row[0]) for row in await cur.fetchall()]
        if not members:
            return NoDevices(post.group, image.kind)
        await cur.execute(
            "INSERT INTO rollouts (image_id, group_name, first_wave_pct, failure_threshold_pct, expires_in_s,"
            " link_base, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (image.id, post.group, post.first_wave_pct, post.failure_threshold_pct, post.expires_in_s, link_base, who),
        )
        row = await cur.fetchone()
        assert row is not None
        rollout_id = int(row[0])
        first = max(1, math.ceil(len(members) * post.first_wave_pct / 100))
        await cur.execute(
            "INSERT INTO rollout_devices (rollout_id, device_id, wave) SELECT %s, d, w"
            " FROM unnest(%s::text[], %s::int[]) AS u(d, w)",
            (rollout_id, members, [1 if n < first else 2 for n in range(len(members))]),
        )
        await _start_wave(
            cur, backend, image, rollout_id, 1, who=who, link_base=link_base, expires_in_s=post.expires_in_s
        )
    return rollout_id


async def read_rollout(pool: Pool, rollout_id: int) -> Rollout | None:
    """The rollout with its waves' counts, or None."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{_ROLLOUT} WHERE r.id = %s", (rollout_id,))
        row = await cur.fetchone()
        if row is None:
            return None
        await cur.execute(_WAVES, {"id": rollout_id, "version": row["version"]})
        waves = [WaveCounts(**w) for w in await cur.fetchall()]
    return Rollout(**row, waves=waves)


async def list_rollouts(pool: Pool) -> list[Rollout]:
    """Every rollout, newest first, with its waves."""
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute("SELECT id FROM rollouts ORDER BY id DESC LIMIT 200")
        ids = [int(row[0]) for row in await cur.fetchall()]
    rollouts = [await read_rollout(pool, rollout_id) for rollout_id in ids]
    return [r for r in rollouts if r is not None]


async def stop_rollout(pool: Pool, rollout_id: int, who: str) -> bool | str:
    """Stop a running rollout (its next wave is never started; updates already sent go on): True, False
    when there is none, or the state it is in."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "UPDATE rollouts SET state = 'stopped', reason = %s, finished_at = now(), updated_at = now()"
            " WHERE id = %s AND state = 'running' RETURNING id",
            (f"stopped by {who}", rollout_id),
        )
        if await cur.fetchone() is not None:
            return True
        await cur.execute("SELECT state FROM rollouts WHERE id = %s", (rollout_id,))
        row = await cur.fetchone()
    return False if row is None else str(row[0])


async def advance_rollouts(pool: Pool, backend: FirmwareBackend) -> list[int]:
    """Advance every running rollout no other instance is advancing; the ids of those that changed."""
    changed: list[int] = []
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute("SELECT id FROM rollouts WHERE state = 'running' ORDER BY id LIMIT %s", (ADVANCE_BATCH,))
        running = [int(row[0]) for row in await cur.fetchall()]
    for rollout_id in running:
        async with pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            if await _advance(cur, backend, rollout_id):
                changed.append(rollout_id)
    return changed


async def _advance(cur: AsyncCursor[dict[str, Any]], backend: FirmwareBackend, rollout_id: int) -> bool:
    await cur.execute(
        "SELECT r.*, i.kind, i.version, i.sha256, i.size, i.notes, i.created_at AS image_created_at,"
        " i.created_by AS image_created_by FROM rollouts r JOIN firmware_images i ON i.id = r.image_id"
        " WHERE r.id = %s AND r.state = 'running' FOR UPDATE OF r SKIP LOCKED",
        (rollout_id,),
    )
    rollout = await cur.fetchone()
    if rollout is None:
        return False
    await cur.execute(_WAVES, {"id": rollout_id, "version": rollout["version"]})
    waves = {w["wave"]: w for w in await cur.fetchall()}
    wave = waves.get(rollout["wave"])
    if wave is None:
        return False
    sent = wave["devices"] - wave["already"]
    if sent > 0 and wave["failed"] * 100 > rollout["failure_threshold_pct"] * sent:
        await cur.execute(
            "UPDATE rollouts SET state = 'stopped', reason = %s, finished_at = now(), updated_at = now() WHERE id = %s",
            (
                f"wave {rollout['wave']}: {wave['failed']} of {sent} updates failed, more than the"
                f" {rollout['failure_threshold_pct']} % allowed",
                rollout_id,
            ),
        )
        return True
    if wave["in_progress"] > 0 or wave["pending"] > 0:
        return False
    if rollout["wave"] == 1 and 2 in waves:
        image = FirmwareImage(
            id=rollout["image_id"],
            kind=rollout["kind"],
            version=rollout["version"],
            sha256=bytes(rollout["sha256"]).hex(),
            size=rollout["size"],
            notes=rollout["notes"],
            created_at=rollout["image_created_at"],
            created_by=rollout["image_created_by"],
        )
        await cur.execute("UPDATE rollouts SET wave = 2, updated_at = now() WHERE id = %s", (rollout_id,))
        await _start_wave(
            cur,
            backend,
            image,
            rollout_id,
            2,
            who=rollout["created_by"],
            link_base=rollout["link_base"],
            expires_in_s=rollout["expires_in_s"],
        )
        return True
    await cur.execute(
        "UPDATE rollouts SET state = 'completed', finished_at = now(), updated_at = now() WHERE id = %s", (rollout_id,)
    )
    return True


async def _start_wave(
    cur: AsyncCursor[Any],
    backend: FirmwareBackend,
    image: FirmwareImage,
    rollout_id: int,
    wave: int,
    *,
    who: str,
    link_base: str,
    expires_in_s: int,
) -> None:
    """Make the update of every device of the wave that does not run the version already (queued: the
    dispatcher sends each when its device is online). On `cur`'s connection and transaction."""
    async with cur.connection.cursor() as plain:
        await plain.execute(
            "SELECT rd.device_id FROM rollout_devices rd JOIN devices d ON d.id = rd.device_id"
            " WHERE rd.rollout_id = %s AND rd.wave = %s AND rd.command_id IS NULL"
            " AND d.firmware_version IS DISTINCT FROM %s ORDER BY rd.device_id",
            (rollout_id, wave, image.version),
        )
        devices = [str(row[0]) for row in await plain.fetchall()]
        expires_at = datetime.now(UTC) + timedelta(seconds=expires_in_s)
        for device_id in devices:
            new = NewCommand(
                device_id=device_id,
                name="update_firmware",
                args=update_args(backend, image, device_id, base=link_base, expires_at=expires_at),
                dangerous=False,
                expires_at=expires_at,
                created_by=who,
                idempotency_key=f"rollout-{rollout_id}",
                request_sha256=None,
            )
            command_id = await insert_command_in(plain, new)
            await plain.execute(
                "UPDATE rollout_devices SET command_id = %s WHERE rollout_id = %s AND device_id = %s",
                (command_id, rollout_id, device_id),
            )
