"""Track exports of one device's window: GeoJSON, GPX 1.1 or CSV, streamed as the rows are read.

Decisions:

- **Streamed, never built whole.** Rows come from a server-side cursor a few thousand at a time and
  leave as text chunks, so a month of 1 Hz samples costs the API a chunk's memory, not the file's.
- **GeoJSON** (RFC 7946, `application/geo+json`): one Feature with a LineString of `[lon, lat]`
  positions and, as the de-facto convention of GPS converters, the fixes' times in
  `properties.times` (same order). Coordinates and times are two passes over the window inside one
  REPEATABLE READ transaction, so both see the same rows. Fewer than two fixes cannot make a
  LineString: the geometry is then `null` (valid GeoJSON).
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
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final
from xml.sax.saxutils import escape

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from api.backends import Pool
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
FIX_COLUMNS: Final = ("ts", "seq", "lat", "lon", "alt", "speed", "heading")
ROWS_PER_CHUNK: Final = 1000  # rows fetched from the server-side cursor, and sent, at a time
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


def _select(columns: Iterable[str], fixes_only: bool) -> sql.Composed:
    condition = sql.SQL(" AND lat IS NOT NULL") if fixes_only else sql.SQL("")
    return sql.SQL(
        "SELECT {columns} FROM telemetry WHERE device_id = %(device_id)s AND ts >= %(start)s AND ts < %(end)s"
        "{condition} ORDER BY ts, seq"
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


async def _rows(
    conn: AsyncConnection[tuple[Any, ...]], statement: sql.Composed, params: dict[str, Any]
) -> AsyncIterator[list[dict[str, Any]]]:
    """Rows of a server-side cursor, a chunk at a time (the caller holds the transaction)."""
    async with conn.cursor(name="track", row_factory=dict_row) as cur:
        await cur.execute(statement, params)
        while chunk := await cur.fetchmany(ROWS_PER_CHUNK):
            yield chunk


async def stream_csv(pool: Pool, query: TrackQuery) -> AsyncIterator[str]:
    """The CSV export, header first."""
    yield ",".join(CSV_COLUMNS) + "\r\n"
    async with pool.connection() as conn, conn.transaction():
        async for chunk in _rows(conn, _select(CSV_COLUMNS, fixes_only=False), _params(query)):
            yield csv_lines(chunk)


async def stream_gpx(pool: Pool, query: TrackQuery) -> AsyncIterator[str]:
    """The GPX export: one track segment of every fix in the window."""
    yield gpx_head(query)
    async with pool.connection() as conn, conn.transaction():
        async for chunk in _rows(conn, _select(FIX_COLUMNS, fixes_only=True), _params(query)):
            yield "".join(gpx_point(row) for row in chunk)
    yield GPX_TAIL


async def stream_geojson(pool: Pool, query: TrackQuery) -> AsyncIterator[str]:
    """The GeoJSON export: a LineString Feature; its times in a second pass over the same snapshot."""
    statement = _select(("ts", "lat", "lon"), fixes_only=True)
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield '{"type":"Feature","geometry":'
        fixes = 0
        async for chunk in _rows(conn, statement, _params(query)):
            coordinates = ",".join(f"[{row['lon']!r},{row['lat']!r}]" for row in chunk)
            if fixes:
                yield "," + coordinates
            elif len(chunk) >= LINE_MIN_POSITIONS:
                yield '{"type":"LineString","coordinates":[' + coordinates
            fixes += len(chunk)
        # A first chunk of one row is the only chunk: one fix, no line.
        yield "]}" if fixes >= LINE_MIN_POSITIONS else "null"
        properties = {"device_id": query.device_id, "from": iso_utc(query.start), "to": iso_utc(query.end)}
        yield ',"properties":' + json.dumps(properties | {"fixes": fixes}, separators=(",", ":"))[:-1] + ',"times":['
        first = True
        async for chunk in _rows(conn, statement, _params(query)):
            times = ",".join(f'"{iso_utc(row["ts"])}"' for row in chunk)
            yield times if first else "," + times
            first = False
        yield "]}}\n"


def stream_track(pool: Pool, query: TrackQuery) -> AsyncIterator[str]:
    """The export the query asks for, as text chunks."""
    if query.file_format == "gpx":
        return stream_gpx(pool, query)
    if query.file_format == "csv":
        return stream_csv(pool, query)
    return stream_geojson(pool, query)
