"""Track exports of one device's window: GeoJSON, GPX 1.1 or CSV, streamed as the rows are read.

Decisions:

- **Streamed, never built whole.** Rows are read a chunk at a time and leave as text chunks, so a
  month of 1 Hz samples costs the API a chunk's memory, not the file's.
- **Exports never hold the API's connections.** They read through a small pool of their own
  (`api.export_pool_size`), so however many slow clients download, the other routes keep theirs. An
  export that cannot get one within `api.export_wait_s` is answered 503 before its download starts.
- **CSV and GPX hold no connection while the client reads.** Each chunk is one keyset query, `(ts,
  boot, seq) > last row sent`, on a connection taken for that query only (the `(device_id, ts, boot,
  seq)` primary key serves the seek). A row committed behind the position already sent is not in the file, as it
  would not be in a snapshot taken at the start.
- **GeoJSON** (RFC 7946, `application/geo+json`): one Feature with a LineString of `[lon, lat]`
  positions and, as the de-facto convention of GPS converters, the fixes' times in
  `properties.times` (same order). Both come from one keyset pass, so they hold the same rows: the
  coordinates leave as they are read and the times wait in a spooled temporary file (memory up to
  1 MiB, then disk: about 24 bytes a fix, 64 MB for a month at 1 Hz) until the geometry is complete.
  Fewer than two fixes cannot make a LineString: the geometry is then `null` (valid GeoJSON).
- **GPX 1.1** (`application/gpx+xml`): one `trk` of one `trkseg`; each fix a `trkpt` with `ele`
  (altitude) and `time`. GPX 1.1 has no speed or course element, so they go in Garmin's widely read
  TrackPointExtension v2 (`gpxtpx:speed` in m/s, converted from km/h; `gpxtpx:course` in degrees).
- **CSV** (RFC 4180, header row): every sample of the window, with or without a fix, and its metrics.
- Only samples with a position are in GeoJSON and GPX.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final
from xml.sax.saxutils import escape

from psycopg import sql
from psycopg.rows import dict_row

from api.backends import ExportLimits
from api.pool import Pool
from api.telemetry.query import TrackQuery
from models.telemetry import METRIC_COLUMNS

MEDIA_TYPES: Final = {
    "geojson": "application/geo+json",
    "gpx": "application/gpx+xml",
    # Litestar appends "; charset=utf-8" to text types itself.
    "csv": "text/csv; header=present",
}
CSV_COLUMNS: Final = (
    "ts",
    "seq",
    "boot",
    "lat",
    "lon",
    "alt",
    "speed",
    "heading",
    "accuracy",
    *METRIC_COLUMNS,
    "quality",
)
FIX_COLUMNS: Final = ("ts", "boot", "seq", "lat", "lon", "alt", "speed", "heading")
ROWS_PER_CHUNK: Final = 1000  # rows read per query, and sent, at a time
TIMES_IN_MEMORY_BYTES: Final = 1024 * 1024  # a GeoJSON export's times beyond this wait on disk
TIMES_BLOCK_CHARS: Final = 64 * 1024
KMH_PER_MS: Final = 3.6
LINE_MIN_POSITIONS: Final = 2  # RFC 7946: a LineString has two or more positions
GPX_HEAD: Final = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<gpx version="1.1" creator="fleetbridge" xmlns="http://www.topografix.com/GPX/1/1"'
    ' xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v2">\n'
)


def iso_utc(ts: datetime) -> str:
    """RFC 3339 in UTC with `Z`."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def content_disposition(query: TrackQuery) -> str:
    """`attachment` with a file name of the device and the window (device ids need no quoting)."""
    window = f"{query.start.astimezone(UTC):%Y%m%dT%H%M%SZ}_{query.end.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    return f'attachment; filename="{query.device_id}_{window}.{query.file_format}"'


def _select(columns: Iterable[str], fixes_only: bool, *, keyset: bool = False) -> sql.Composed:
    fixes = " AND lat IS NOT NULL" if fixes_only else ""
    # A row comparison, so the (device_id, ts, boot, seq) primary key serves the seek.
    seek = " AND (ts, boot, seq) > (%(after_ts)s, %(after_boot)s, %(after_seq)s) ORDER BY ts, boot, seq LIMIT %(limit)s"
    condition = sql.SQL(fixes + (seek if keyset else " ORDER BY ts, boot, seq"))
    return sql.SQL(
        "SELECT {columns} FROM telemetry WHERE device_id = %(device_id)s AND ts >= %(start)s AND ts < %(end)s"
        "{condition}"
    ).format(columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns), condition=condition)


def _params(query: TrackQuery) -> dict[str, Any]:
    return {"device_id": query.device_id, "start": query.start, "end": query.end}


def csv_lines(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV records (CRLF-terminated, as RFC 4180 says) of track rows."""
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        writer.writerow([iso_utc(row["ts"]), *("" if row[c] is None else row[c] for c in CSV_COLUMNS[1:])])
    return out.getvalue()


def gpx_point(row: Mapping[str, Any]) -> str:
    """One `trkpt`, children in the order the GPX 1.1 schema requires (ele, time, extensions)."""
    parts = [f'<trkpt lat="{row["lat"]!r}" lon="{row["lon"]!r}">']
    if row["alt"] is not None:
        parts.append(f"<ele>{row['alt']!r}</ele>")
    parts.append(f"<time>{iso_utc(row['ts'])}</time>")
    extension = []
    if row["speed"] is not None:
        extension.append(f"<gpxtpx:speed>{row['speed'] / KMH_PER_MS:.3f}</gpxtpx:speed>")
    if row["heading"] is not None:
        extension.append(f"<gpxtpx:course>{row['heading']!r}</gpxtpx:course>")
    if extension:
        parts.append(
            f"<extensions><gpxtpx:TrackPointExtension>{''.join(extension)}</gpxtpx:TrackPointExtension></extensions>"
        )
    parts.append("</trkpt>\n")
    return "".join(parts)


def gpx_head(query: TrackQuery) -> str:
    """The document up to the first `trkpt`."""
    return f"{GPX_HEAD}<trk><name>{escape(query.device_id)}</name><trkseg>\n"


GPX_TAIL: Final = "</trkseg></trk>\n</gpx>\n"


async def _keyset_chunks(
    pool: Pool, columns: tuple[str, ...], *, fixes_only: bool, query: TrackQuery, limits: ExportLimits
) -> AsyncIterator[list[dict[str, Any]]]:
    """Rows in (ts, boot, seq) order, a chunk per query, each on a connection taken for that query only.

    The first connection is waited for `limits.wait_s` (the caller turns a `PoolTimeout` into 503); later
    ones for the pool's own timeout, since a download already under way should rather wait than be cut.
    """
    statement = _select(columns, fixes_only, keyset=True)
    # (start, -1, -1) is before the window's first row: boot and seq are never negative.
    params = _params(query) | {"after_ts": query.start, "after_boot": -1, "after_seq": -1, "limit": ROWS_PER_CHUNK}
    wait_s: float | None = limits.wait_s
    while True:
        async with pool.connection(timeout=wait_s) as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(statement, params)
            chunk = await cur.fetchall()
        wait_s = None
        if chunk:
            yield chunk
        if len(chunk) < ROWS_PER_CHUNK:
            return
        params |= {"after_ts": chunk[-1]["ts"], "after_boot": chunk[-1]["boot"], "after_seq": chunk[-1]["seq"]}


async def stream_csv(pool: Pool, query: TrackQuery, limits: ExportLimits) -> AsyncIterator[str]:
    """The CSV export, header first (sent with the first chunk, once a connection was had)."""
    head = ",".join(CSV_COLUMNS) + "\r\n"
    async for chunk in _keyset_chunks(pool, CSV_COLUMNS, fixes_only=False, query=query, limits=limits):
        yield head + csv_lines(chunk)
        head = ""
    if head:
        yield head


async def stream_gpx(pool: Pool, query: TrackQuery, limits: ExportLimits) -> AsyncIterator[str]:
    """The GPX export: one track segment of every fix in the window."""
    head = gpx_head(query)
    async for chunk in _keyset_chunks(pool, FIX_COLUMNS, fixes_only=True, query=query, limits=limits):
        yield head + "".join(gpx_point(row) for row in chunk)
        head = ""
    yield head + GPX_TAIL


async def stream_geojson(pool: Pool, query: TrackQuery, limits: ExportLimits) -> AsyncIterator[str]:
    """The GeoJSON export: a LineString Feature, then the same fixes' times.

    One keyset pass gives both: the coordinates leave as they are read, the times wait in a spooled
    file (in memory up to `TIMES_IN_MEMORY_BYTES`, then on disk) until the geometry is complete, so both
    arrays hold exactly the same rows and no connection is held while the client reads.
    """
    chunks = _keyset_chunks(pool, ("ts", "boot", "seq", "lat", "lon"), fixes_only=True, query=query, limits=limits)
    with tempfile.SpooledTemporaryFile(max_size=TIMES_IN_MEMORY_BYTES, mode="w+", encoding="utf-8") as times:
        head = '{"type":"Feature","geometry":'
        fixes = 0
        async for chunk in chunks:
            coordinates = ",".join(f"[{row['lon']!r},{row['lat']!r}]" for row in chunk)
            times.write(("," if fixes else "") + ",".join(f'"{iso_utc(row["ts"])}"' for row in chunk))
            if fixes:
                yield "," + coordinates
            elif len(chunk) >= LINE_MIN_POSITIONS:
                yield head + '{"type":"LineString","coordinates":[' + coordinates
                head = ""
            fixes += len(chunk)
        # A first chunk of one row is the only chunk: one fix, no line.
        geometry = "]}" if fixes >= LINE_MIN_POSITIONS else head + "null"
        properties = {"device_id": query.device_id, "from": iso_utc(query.start), "to": iso_utc(query.end)}
        yield (
            geometry
            + ',"properties":'
            + json.dumps(properties | {"fixes": fixes}, separators=(",", ":"))[:-1]
            + ',"times":['
        )
        times.seek(0)
        while block := times.read(TIMES_BLOCK_CHARS):
            yield block
        yield "]}}\n"


def stream_track(pool: Pool, query: TrackQuery, limits: ExportLimits) -> AsyncIterator[str]:
    """The export the query asks for, as text chunks; the first takes a connection (`PoolTimeout` when
    none is free within `limits.wait_s`), so read it before the answer starts (`started`)."""
    if query.file_format == "gpx":
        return stream_gpx(pool, query, limits)
    if query.file_format == "csv":
        return stream_csv(pool, query, limits)
    return stream_geojson(pool, query, limits)


async def started(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    """`chunks` with its first chunk already read: errors of getting a connection happen here, where
    they can still be answered with a status, not halfway through a download."""
    first = await anext(chunks, None)

    async def resumed() -> AsyncIterator[str]:
        if first is not None:
            yield first
        async for chunk in chunks:
            yield chunk

    return resumed()
