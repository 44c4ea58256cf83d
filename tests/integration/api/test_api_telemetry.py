"""Telemetry history over HTTP: keyset pagination on (ts, boot, seq), metric filters, parameter errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

pytestmark = pytest.mark.integration

DEVICE = "truck-0001"


async def insert_rows(database_url: str, rows: list[dict[str, Any]]) -> None:
    """Insert telemetry rows; every row names the same columns."""
    columns = list(rows[0])
    statement = f"INSERT INTO telemetry ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        await cur.executemany(statement, [tuple(row[c] for c in columns) for row in rows])


def row(ts: datetime, seq: int, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "device_id": DEVICE,
        "ts": ts,
        "seq": seq,
        "boot": 0,
        "received_at": ts + timedelta(milliseconds=50),
        "lat": None,
        "lon": None,
        "speed": None,
        "fuel": None,
        "engine_temp": None,
        "quality": 90,
        "extra": None,
        "agg": None,
    }
    return base | values


async def fetch_all(http: httpx.AsyncClient, params: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    pages = 0
    cursor: str | None = None
    while True:
        response = await http.get(
            f"/api/v1/devices/{DEVICE}/telemetry", params=params | ({"cursor": cursor} if cursor else {})
        )
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages


async def test_telemetry_pages_through_rows_in_ts_seq_order(http: httpx.AsyncClient, database_url: str) -> None:
    now = datetime.now(UTC).replace(microsecond=123456)
    # Several samples share a timestamp (a burst): the cursor must tell them apart by seq.
    rows = [row(now - timedelta(minutes=30) + timedelta(seconds=n // 3), n, fuel=50 + n / 10) for n in range(10)]
    await insert_rows(database_url, rows[::-1])
    await insert_rows(database_url, [row(now - timedelta(minutes=10), 100, fuel=1.0, device_id="truck-0002")])

    items, pages = await fetch_all(http, {"limit": "4"})

    assert [item["seq"] for item in items] == list(range(10))
    assert pages == 3
    assert items[0]["metrics"] == {"fuel": 50.0}
    assert items[3]["metrics"] == {"fuel": 50.3}  # a `real` column, returned as written
    assert items[0]["position"] is None
    assert items[0]["quality"] == 90
    assert items[0]["boot"] == 0
    assert datetime.fromisoformat(items[0]["ts"]) == rows[0]["ts"]


async def test_telemetry_window_is_half_open_and_defaults_to_the_last_hour(
    http: httpx.AsyncClient, database_url: str
) -> None:
    now = datetime.now(UTC)
    await insert_rows(
        database_url,
        [row(now - timedelta(hours=2), 1, fuel=10.0), row(now - timedelta(minutes=5), 2, fuel=20.0)],
    )
    start = (now - timedelta(hours=3)).isoformat()
    end = (now - timedelta(minutes=5)).isoformat()

    recent, _ = await fetch_all(http, {})
    window, _ = await fetch_all(http, {"from": start, "to": end})

    assert [item["seq"] for item in recent] == [2]
    assert [item["seq"] for item in window] == [1]  # `to` is exclusive


async def test_telemetry_metric_filter_returns_only_rows_and_value_of_that_metric(
    http: httpx.AsyncClient, database_url: str
) -> None:
    now = datetime.now(UTC) - timedelta(minutes=20)
    await insert_rows(
        database_url,
        [
            row(now, 1, fuel=40.5, engine_temp=90.0, lat=52.5, lon=13.4, speed=50.0),
            row(now + timedelta(seconds=1), 2, engine_temp=91.0),
            row(
                now + timedelta(seconds=2),
                3,
                lat=52.6,
                lon=13.5,
                speed=55.5,
                extra=json.dumps({"tyre_kpa": 820}),
                agg=json.dumps({"vibration": [1.0, 9.5, 4.25, 100]}),
            ),
        ],
    )

    fuel, _ = await fetch_all(http, {"metric": "fuel"})
    positions, _ = await fetch_all(http, {"metric": "position"})
    everything, _ = await fetch_all(http, {})

    assert [(item["seq"], item["metrics"], item["position"]) for item in fuel] == [(1, {"fuel": 40.5}, None)]
    assert [(item["seq"], item["metrics"]) for item in positions] == [(1, {}), (3, {})]
    assert positions[1]["position"] == {
        "lat": 52.6,
        "lon": 13.5,
        "alt": None,
        "speed": 55.5,
        "heading": None,
        "accuracy": None,
    }
    assert everything[0]["metrics"] == {"fuel": 40.5, "engine_temp": 90.0}
    assert everything[2]["metrics"] == {"tyre_kpa": 820.0}  # metrics without a column come from `extra`
    assert everything[2]["aggregates"] == {"vibration": {"min": 1.0, "max": 9.5, "avg": 4.25, "count": 100}}
    assert everything[0]["aggregates"] == {}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"from": "yesterday"}, "not an ISO-8601 timestamp"),
        ({"from": "2026-11-25T10:00:00"}, "has no time zone"),
        ({"from": "2026-11-25T11:00:00Z", "to": "2026-11-25T10:00:00Z"}, "is after to"),
        ({"metric": "fuel; DROP TABLE telemetry"}, "unknown metric"),
        ({"metric": "device_id"}, "unknown metric"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor is not valid"),
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
    ],
)
async def test_telemetry_rejects_bad_params_with_a_clear_problem(
    http: httpx.AsyncClient, params: dict[str, str], expected: str
) -> None:
    response = await http.get(f"/api/v1/devices/{DEVICE}/telemetry", params=params)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert expected in response.text


async def test_telemetry_accepts_an_offset_whose_plus_was_decoded_as_space(
    http: httpx.AsyncClient, database_url: str
) -> None:
    ts = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    if ts < datetime.now(UTC) - timedelta(days=29):
        ts = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    await insert_rows(database_url, [row(ts, 7, fuel=33.0)])
    local = ts.astimezone(UTC).replace(tzinfo=None)
    # An unencoded `+01:00` arrives as ` 01:00`; the API reads it as the offset that was meant.
    start = (local + timedelta(hours=1) - timedelta(minutes=1)).isoformat() + "+01:00"
    end = (local + timedelta(hours=1) + timedelta(minutes=1)).isoformat() + "+01:00"

    response = await http.get(f"/api/v1/devices/{DEVICE}/telemetry?from={start}&to={end}")

    assert response.status_code == 200, response.text
    assert [item["seq"] for item in response.json()["items"]] == [7]


async def test_telemetry_gaps_list_missing_seq_ranges_per_boot(http: httpx.AsyncClient, database_url: str) -> None:
    base = datetime.now(UTC) - timedelta(minutes=30)
    present = [(0, s) for s in (0, 1, 2, 5, 6, 9)] + [(1, s) for s in (0, 1, 3)]
    await insert_rows(
        database_url, [row(base + timedelta(seconds=i), seq, boot=boot) for i, (boot, seq) in enumerate(present)]
    )
    response = await http.get(f"/api/v1/devices/{DEVICE}/telemetry/gaps")
    assert response.status_code == 200
    report = response.json()
    assert report["samples"] == len(present)
    assert report["missing"] == 2 + 2 + 1
    assert report["gaps"] == [
        {"boot": 0, "first": 3, "last": 4, "missing": 2},
        {"boot": 0, "first": 7, "last": 8, "missing": 2},
        {"boot": 1, "first": 2, "last": 2, "missing": 1},
    ]
    assert report["truncated"] is False
    empty = await http.get(
        f"/api/v1/devices/{DEVICE}/telemetry/gaps",
        params={"from": (base - timedelta(days=1)).isoformat(), "to": base.isoformat()},
    )
    assert empty.json() == {
        "device_id": DEVICE,
        "samples": 0,
        "missing": 0,
        "gaps": [],
        "resets": [],
        "truncated": False,
    }


async def test_telemetry_gaps_are_not_hidden_by_seqs_a_restart_reused_within_one_boot(
    http: httpx.AsyncClient, database_url: str
) -> None:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    # Boot 0 counted 0..5, restarted without a new boot number and counted 0, 1, 3: its 2 is missing,
    # although the first run's 2 is stored under the same (boot, seq).
    seqs = [0, 1, 2, 3, 4, 5, 0, 1, 3]
    await insert_rows(database_url, [row(base + timedelta(seconds=i), seq) for i, seq in enumerate(seqs)])

    report = (await http.get(f"/api/v1/devices/{DEVICE}/telemetry/gaps")).json()

    assert report["samples"] == len(seqs)
    assert report["gaps"] == [{"boot": 0, "first": 2, "last": 2, "missing": 1}]
    assert report["missing"] == 1
    assert [(r["boot"], r["before"], r["after"]) for r in report["resets"]] == [(0, 5, 0)]
    assert datetime.fromisoformat(report["resets"][0]["at"]) == base + timedelta(seconds=6)


async def test_telemetry_pages_keep_samples_of_two_boots_with_the_same_ts_and_seq(
    http: httpx.AsyncClient, database_url: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    # After a reboot the device's clock and counter started over: boot 1 repeats boot 0's (ts, seq).
    rows = [
        row(now + timedelta(seconds=n), n, boot=boot, fuel=float(10 * boot + n)) for boot in (0, 1) for n in range(3)
    ]
    await insert_rows(database_url, rows)

    items, pages = await fetch_all(http, {"limit": "1"})

    assert [(datetime.fromisoformat(item["ts"]), item["boot"], item["seq"]) for item in items] == sorted(
        (r["ts"], r["boot"], r["seq"]) for r in rows
    )
    assert pages == len(rows)
