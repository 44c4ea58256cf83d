"""History beyond raw pages, over HTTP against real PostgreSQL: time buckets (from raw rows and from the
rollups the bridge's sink keeps), downsampled series, track exports, and their parameter errors."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from psycopg.rows import dict_row

from bridge.decode import Decoded, decode_message
from bridge.message import RawMessage
from bridge.sink import PostgresTelemetrySink
from models.telemetry import METRIC_COLUMNS, Limits
from tests.contracts.buckets import brute_force, same_sum

pytestmark = pytest.mark.integration

DEVICE = "hist-1"
OTHER = "hist-2"
NOW = datetime.now(UTC).replace(microsecond=0)
END = NOW - timedelta(minutes=5)
START = END - timedelta(hours=26)
GPX = "{http://www.topografix.com/GPX/1/1}"
GPXTPX = "{http://www.garmin.com/xmlschemas/TrackPointExtension/v2}"


def message(device: str, samples: list[dict[str, Any]]) -> Decoded:
    payload = msgspec.json.encode({"samples": samples})
    result = decode_message(RawMessage(f"fleet/v1/{device}/telemetry", payload, None, NOW), now=NOW, limits=Limits())
    assert not result.rejections, result.rejections
    return result


def history_samples(rng: random.Random, count: int) -> list[tuple[str, dict[str, Any]]]:
    span_s = int((END - START).total_seconds())
    out = []
    for seq in range(count):
        sample: dict[str, Any] = {
            "seq": seq,
            "ts": (START + timedelta(seconds=rng.randrange(span_s), milliseconds=rng.randrange(1000))).isoformat(),
            "metrics": {},
        }
        for metric, low, high in (("fuel", 0, 100), ("engine_temp", -40, 150), ("vibration", 0, 100)):
            if rng.random() < 0.6:
                sample["metrics"][metric] = round(rng.uniform(low, high), 2)
        if rng.random() < 0.5:
            sample["pos"] = {"lat": rng.uniform(50, 54), "lon": rng.uniform(4, 14), "speed": rng.uniform(0, 120)}
        out.append((DEVICE if rng.random() < 0.8 else OTHER, sample))
    return out


async def ingest(database_url: str, samples: list[tuple[str, dict[str, Any]]], rng: random.Random) -> None:
    """Through the bridge's sink, as the bridge stores them: shuffled (late samples), partly redelivered."""
    shuffled = samples[:]
    rng.shuffle(shuffled)
    sink = PostgresTelemetrySink(database_url)
    try:
        for start in range(0, len(shuffled), 250):
            await sink.write([message(d, [s]) for d, s in shuffled[start : start + 250]])
        await sink.write([message(d, [s]) for d, s in rng.sample(samples, len(samples) // 4)])
    finally:
        await sink.close()


@pytest.fixture
async def stored(database_url: str) -> list[dict[str, Any]]:
    """Random history of two devices over 26 hours; returns the rows of DEVICE as stored."""
    rng = random.Random(11)
    await ingest(database_url, history_samples(rng, 3000), rng)
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT device_id, ts, seq, lat, lon, {', '.join(METRIC_COLUMNS)} FROM telemetry WHERE device_id = %s",
            (DEVICE,),
        )
        return await cur.fetchall()


@pytest.mark.parametrize(
    ("bucket", "width", "source"),
    [
        ("10s", timedelta(seconds=10), "raw"),
        ("45s", timedelta(seconds=45), "raw"),
        ("1m", timedelta(minutes=1), "rollup_1m"),
        ("5m", timedelta(minutes=5), "rollup_1m"),
        ("90m", timedelta(minutes=90), "rollup_1m"),
        ("1h", timedelta(hours=1), "rollup_1h"),
        ("6h", timedelta(hours=6), "rollup_1h"),
        ("1d", timedelta(days=1), "rollup_1h"),
    ],
)
async def test_buckets_equal_a_brute_force_aggregation_of_the_raw_rows(
    http: httpx.AsyncClient, stored: list[dict[str, Any]], bucket: str, width: timedelta, source: str
) -> None:
    response = await http.get(
        f"/api/v1/devices/{DEVICE}/telemetry",
        params={"bucket": bucket, "from": START.isoformat(), "to": END.isoformat()},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["source"], body["bucket"], body["bucket_s"]) == (source, bucket, width.total_seconds())
    start, end = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
    assert start <= START < start + width
    assert end - width < END <= end
    expected = brute_force([r for r in stored if start <= r["ts"] < end], width)
    assert [datetime.fromisoformat(b["start"]) for b in body["buckets"]] == sorted(t for _, t in expected)
    for got in body["buckets"]:
        want = expected[DEVICE, datetime.fromisoformat(got["start"])]
        assert got["samples"] == want.samples
        assert set(got["metrics"]) == {m for m, s in want.metrics.items() if s.n}
        for metric, stats in got["metrics"].items():
            summary = want.metrics[metric]
            assert (stats["count"], stats["min"], stats["max"]) == (summary.n, summary.low, summary.high)
            assert same_sum(stats["avg"] * summary.n, summary.total)
        if want.last_fix is None:
            assert got["position"] is None
        else:
            ts, _, lat, lon = want.last_fix
            assert got["position"] == {"count": want.fixes, "lat": lat, "lon": lon, "ts": got["position"]["ts"]}
            assert datetime.fromisoformat(got["position"]["ts"]) == ts


async def test_buckets_of_one_metric_list_only_buckets_holding_it(
    http: httpx.AsyncClient, stored: list[dict[str, Any]]
) -> None:
    response = await http.get(
        f"/api/v1/devices/{DEVICE}/telemetry",
        params={"bucket": "1m", "metric": "fuel", "from": START.isoformat(), "to": END.isoformat()},
    )

    body = response.json()
    assert response.status_code == 200
    fuel_minutes = {r["ts"].replace(second=0, microsecond=0) for r in stored if r["fuel"] is not None}
    assert {datetime.fromisoformat(b["start"]) for b in body["buckets"]} == fuel_minutes
    assert all(set(b["metrics"]) == {"fuel"} and b["position"] is None for b in body["buckets"])


async def test_points_downsample_each_series_keeping_its_ends(
    http: httpx.AsyncClient, stored: list[dict[str, Any]]
) -> None:
    window = {"from": START.isoformat(), "to": END.isoformat()}
    one = await http.get(f"/api/v1/devices/{DEVICE}/telemetry", params=window | {"points": "50", "metric": "fuel"})
    every = await http.get(f"/api/v1/devices/{DEVICE}/telemetry", params=window | {"points": "100"})

    assert one.status_code == every.status_code == 200
    fuel = sorted((r["ts"], r["seq"], r["fuel"]) for r in stored if r["fuel"] is not None)
    [series] = one.json()["series"]
    points = [(datetime.fromisoformat(p["ts"]), p["value"]) for p in series["points"]]
    assert (series["metric"], series["samples"], len(points)) == ("fuel", len(fuel), 50)
    assert points[0] == (fuel[0][0], fuel[0][2])
    assert points[-1] == (fuel[-1][0], fuel[-1][2])
    assert set(points) <= {(ts, value) for ts, _, value in fuel}  # real samples, not interpolations
    assert [ts for ts, _ in points] == sorted(ts for ts, _ in points)
    assert {s["metric"]: len(s["points"]) for s in every.json()["series"]} == {
        "fuel": 100,
        "engine_temp": 100,
        "vibration": 100,
    }


async def insert_track(database_url: str) -> list[tuple[Any, ...]]:
    base = NOW - timedelta(minutes=50)  # 2505 samples a second apart: all inside the last hour
    rows = [
        (base + timedelta(seconds=n), n, 52.0 + n / 1000, 13.0 + n / 1000, 30.0 + n, 36.0, 90.0, 50.0 - n / 10)
        for n in range(2500)
    ]
    rows += [(base + timedelta(seconds=2500 + n), 2500 + n, None, None, None, None, None, 10.0) for n in range(5)]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO telemetry (device_id, ts, received_at, seq, lat, lon, alt, speed, heading, fuel)"
            " VALUES ('track-1', %s, now(), %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
    return rows


async def get_track(http: httpx.AsyncClient, file_format: str, device: str = "track-1") -> httpx.Response:
    params = {"format": file_format, "from": (NOW - timedelta(hours=1)).isoformat(), "to": NOW.isoformat()}
    response = await http.get(f"/api/v1/devices/{device}/track", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].startswith('attachment; filename="')
    assert response.headers["content-disposition"].endswith(f'.{file_format}"')
    return response


async def test_track_geojson_is_a_line_string_feature_with_times(http: httpx.AsyncClient, database_url: str) -> None:
    rows = await insert_track(database_url)

    response = await get_track(http, "geojson")

    assert response.headers["content-type"].startswith("application/geo+json")
    feature = json.loads(response.text)
    fixes = [r for r in rows if r[2] is not None]
    assert feature["type"] == "Feature"
    assert feature["geometry"]["type"] == "LineString"
    assert feature["geometry"]["coordinates"] == [[r[3], r[2]] for r in fixes]
    assert [datetime.fromisoformat(t) for t in feature["properties"]["times"]] == [r[0] for r in fixes]
    assert (feature["properties"]["device_id"], feature["properties"]["fixes"]) == ("track-1", len(fixes))


async def test_track_geojson_without_two_fixes_has_no_geometry(http: httpx.AsyncClient, database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO telemetry (device_id, ts, received_at, seq, lat, lon) VALUES ('lonely', %s, now(), 1, 1, 2)",
            (NOW - timedelta(minutes=1),),
        )

    one = json.loads((await get_track(http, "geojson", "lonely")).text)
    none = json.loads((await get_track(http, "geojson", "nobody")).text)

    assert one["geometry"] is None
    assert (one["properties"]["fixes"], len(one["properties"]["times"])) == (1, 1)
    assert none["geometry"] is None
    assert none["properties"]["times"] == []


async def test_track_gpx_is_gpx_1_1_with_time_ele_and_speed(http: httpx.AsyncClient, database_url: str) -> None:
    rows = await insert_track(database_url)

    response = await get_track(http, "gpx")

    assert response.headers["content-type"].startswith("application/gpx+xml")
    root = ET.fromstring(response.content)
    assert (root.tag, root.get("version")) == (f"{GPX}gpx", "1.1")
    points = root.findall(f"{GPX}trk/{GPX}trkseg/{GPX}trkpt")
    fixes = [r for r in rows if r[2] is not None]
    assert len(points) == len(fixes)
    first = points[0]
    assert (float(first.get("lat", "nan")), float(first.get("lon", "nan"))) == (fixes[0][2], fixes[0][3])
    assert float(first.findtext(f"{GPX}ele", "nan")) == fixes[0][4]
    assert datetime.fromisoformat(first.findtext(f"{GPX}time", "")) == fixes[0][0]
    speed = first.findtext(f"{GPX}extensions/{GPXTPX}TrackPointExtension/{GPXTPX}speed", "nan")
    assert math.isclose(float(speed), 36.0 / 3.6)  # km/h stored, m/s in GPX


async def test_track_csv_holds_every_sample_with_a_header(http: httpx.AsyncClient, database_url: str) -> None:
    rows = await insert_track(database_url)

    response = await get_track(http, "csv")

    assert response.headers["content-type"].startswith("text/csv")
    records = list(csv.DictReader(io.StringIO(response.text)))
    assert len(records) == len(rows)
    assert [int(r["seq"]) for r in records] == [r[1] for r in rows]
    assert datetime.fromisoformat(records[0]["ts"]) == rows[0][0]
    assert (float(records[0]["lat"]), float(records[0]["fuel"])) == (rows[0][2], rows[0][7])
    assert records[-1]["lat"] == ""  # a sample without a fix is still a row


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("telemetry", {"bucket": "5 minutes"}, "is not a duration"),
        ("telemetry", {"bucket": "0m"}, "is not a duration"),
        ("telemetry", {"bucket": "-1h"}, "is not a duration"),
        ("telemetry", {"bucket": "1w"}, "is not a duration"),
        ("telemetry", {"bucket": "32d"}, "longer than 31 days"),
        ("telemetry", {"bucket": "1s", "from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}, "at most 10000"),
        ("telemetry", {"bucket": "1m", "points": "10"}, "exclude each other"),
        ("telemetry", {"bucket": "1m", "cursor": "abc"}, "cursor applies to raw pages only"),
        ("telemetry", {"points": "10", "limit": "5"}, "limit applies to raw pages only"),
        ("telemetry", {"points": "1"}, "out of range"),
        ("telemetry", {"points": "10001"}, "out of range"),
        ("telemetry", {"points": "many"}, "points"),
        ("telemetry", {"points": "10", "metric": "position"}, "track export"),
        ("telemetry", {"bucket": "1m", "metric": "speed"}, "unknown metric"),
        ("telemetry", {"bucket": "1m", "from": "2026-11-25T11:00:00Z", "to": "2026-11-25T10:00:00Z"}, "is after to"),
        ("track", {"format": "kml"}, "unknown format 'kml'"),
        ("track", {"from": "2026-09-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "longer than 31 days"),
        ("track", {"from": "noon"}, "not an ISO-8601 timestamp"),
    ],
)
async def test_history_refuses_bad_params_with_a_clear_problem(
    http: httpx.AsyncClient, path: str, params: dict[str, str], expected: str
) -> None:
    response = await http.get(f"/api/v1/devices/{DEVICE}/{path}", params=params)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert expected in response.text
