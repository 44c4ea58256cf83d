"""Firmware images in PostgreSQL: stored whole (checked against the SHA-256 the uploader stated), listed,
and read back in byte ranges for resumable downloads."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from psycopg import errors as pg_errors
from psycopg.rows import dict_row

from api.firmware.schemas import FirmwareImage
from api.pool import Pool
from models.firmware import ByteRange

CHUNK_BYTES: Final = 256 * 1024
_COLUMNS = "id, kind, version, encode(sha256, 'hex') AS sha256, size, notes, created_at, created_by"
_INSERT = (
    "INSERT INTO firmware_images (kind, version, sha256, size, data, notes, created_by)"
    f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}"
)
# An image that an unfinished update names stays (a device may be downloading it).
_IN_USE = (
    "SELECT 1 FROM commands WHERE name = 'update_firmware' AND state IN ('queued', 'sent', 'received')"
    " AND (args->>'image_id')::bigint = %s LIMIT 1"
)


class DuplicateVersionError(Exception):
    """An image of that kind and version exists already."""


def image_from_row(row: Mapping[str, Any]) -> FirmwareImage:
    """A `FirmwareImage` from a row with `_COLUMNS`."""
    return FirmwareImage(**dict(row))


def digest_problem(data: bytes, stated_sha256: str) -> str | None:
    """Why `data` is not the image the uploader described, or None."""
    if not data:
        return "the image is empty"
    actual = hashlib.sha256(data).hexdigest()
    if actual != stated_sha256:
        return f"the image's SHA-256 is {actual}, not {stated_sha256} as stated: upload it again"
    return None


async def store_image(
    pool: Pool, *, kind: str, version: str, data: bytes, notes: str | None, who: str
) -> FirmwareImage:
    """Store a checked image; `DuplicateVersionError` when its kind already has that version."""
    try:
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_INSERT, (kind, version, hashlib.sha256(data).digest(), len(data), data, notes, who))
            row = await cur.fetchone()
    except pg_errors.UniqueViolation as exc:
        raise DuplicateVersionError(f"a {kind} image of version {version} exists already") from exc
    assert row is not None
    return image_from_row(row)


async def list_images(pool: Pool, kind: str | None) -> list[FirmwareImage]:
    """Every image (of `kind`), newest first."""
    where = "" if kind is None else " WHERE kind = %(kind)s"
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM firmware_images{where} ORDER BY id DESC", {"kind": kind})
        return [image_from_row(row) for row in await cur.fetchall()]


async def read_image(pool: Pool, image_id: int) -> FirmwareImage | None:
    """One image's description, or None."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM firmware_images WHERE id = %s", (image_id,))
        row = await cur.fetchone()
    return None if row is None else image_from_row(row)


async def delete_image(pool: Pool, image_id: int) -> bool | str:
    """Delete an image: True, False when there is none, or why it must stay."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute("SELECT 1 FROM firmware_images WHERE id = %s FOR UPDATE", (image_id,))
        if await cur.fetchone() is None:
            return False
        await cur.execute(_IN_USE, (image_id,))
        if await cur.fetchone() is not None:
            return f"image {image_id} is named by an update not finished yet"
        await cur.execute("DELETE FROM firmware_images WHERE id = %s", (image_id,))
    return True


async def image_bytes(pool: Pool, image_id: int, span: ByteRange) -> AsyncIterator[bytes]:
    """The bytes of `span`, a chunk at a time, each read on its own (the image is stored uncompressed and
    out of line, so a chunk costs a read of that chunk only)."""
    position = span.first
    while position <= span.last:
        length = min(CHUNK_BYTES, span.last - position + 1)
        async with pool.connection() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT substring(data FROM %s FOR %s) FROM firmware_images WHERE id = %s",
                (position + 1, length, image_id),
            )
            row = await cur.fetchone()
        if row is None:
            return  # deleted meanwhile: the download ends short, and the device's hash check fails
        chunk = bytes(row[0])
        yield chunk
        position += len(chunk)
        if not chunk:
            return
