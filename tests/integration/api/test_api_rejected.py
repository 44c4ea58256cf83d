"""`GET /api/v1/devices/{id}/rejected` and `GET /api/v1/rejected`: what the bridge refused, and who may read it.

The dead letters are written by the bridge's own decode and sink, as they would be in production.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import psycopg
import pytest

from api.accounts.services import Refused, create_api_key
from bridge.decode import decode_message
from bridge.message import RawMessage
from bridge.sink import PostgresTelemetrySink
from config import Settings
from models.telemetry import Limits
from tests.integration.api.conftest import mint_token

pytestmark = pytest.mark.integration

NORTH = "truck-n1"
SOUTH = "truck-s1"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


def received(minute: int) -> datetime:
    return START + timedelta(minutes=minute)


def message(device: str, payload: bytes, minute: int, topic: str | None = None) -> RawMessage:
    return RawMessage(topic or f"fleet/v1/{device}/telemetry", payload, None, received(minute))


@pytest.fixture
async def refusals(database_url: str) -> None:
    """North: three refusals (a whole message, a sample of a batch, a long payload); south: one; and one
    on a topic outside the grammar, which names no device."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO devices (id, group_name) VALUES (%s, 'north'), (%s, 'south')", (NORTH, SOUTH))
    now = received(10)
    good = {"seq": 1, "ts": now.isoformat(), "boot": 3, "metrics": {"fuel": 40}}
    batch = msgspec.json.encode({"samples": [good, {**good, "seq": 2, "metrics": {"fuel": 140}}]})
    messages = [
        message(NORTH, b'{"seq": 1, \n"ts": \xff\xfe \xe2\x80\xae', 0),
        message(NORTH, batch, 1),
        message(NORTH, b"[" + b" " * 1000 + b"nonsense", 2),
        message(SOUTH, b"{}", 3),
        message("", b"{}", 4, topic="elsewhere/telemetry"),
    ]
    sink = PostgresTelemetrySink(database_url)
    try:
        for raw in messages:  # one batch each: ids follow the order received
            await sink.write([decode_message(raw, now=now, limits=Limits())])
    finally:
        await sink.close()


async def make_key(database_url: str, group: str | None) -> str:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        created = await create_api_key(conn, f"key-{group}", group)
    assert not isinstance(created, Refused)
    return created.key


@pytest.fixture
async def as_role(api_url: str, api_settings: Settings) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    clients = {
        role: httpx.AsyncClient(
            base_url=api_url, timeout=10, headers={"Authorization": f"Bearer {mint_token(api_settings, role, role)}"}
        )
        for role in ("admin", "operator", "viewer")
    }
    yield clients
    for client in clients.values():
        await client.aclose()


@pytest.mark.usefixtures("refusals")
async def test_device_rejected_lists_its_refusals_newest_first_with_reasons_and_a_safe_preview(
    as_role: dict[str, httpx.AsyncClient],
) -> None:
    response = await as_role["viewer"].get(f"/api/v1/devices/{NORTH}/rejected")
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    long_one, sample, unparseable = page["items"]
    assert [item["device_id"] for item in page["items"]] == [NORTH] * 3
    assert [item["received_at"] for item in page["items"]] == [
        received(m).isoformat().replace("+00:00", "Z") for m in (2, 1, 0)
    ]
    assert unparseable["index"] is None
    assert unparseable["reason"].startswith("not valid JSON telemetry")
    # Line breaks, invalid UTF-8 and a right-to-left override are escaped, not shown.
    assert unparseable["payload_preview"] == '{"seq": 1, \\u000a"ts": \\xff\\xfe \\u202e'
    assert unparseable["preview_truncated"] is False
    assert (sample["index"], sample["seq"], sample["boot"]) == (1, 2, 3)
    assert "fuel=140.0 outside" in sample["reason"]
    assert long_one["payload_size"] == 1009
    assert long_one["preview_truncated"] is True
    assert len(long_one["payload_preview"]) == 256
    assert len(long_one["payload_sha256"]) == 64


@pytest.mark.usefixtures("refusals")
async def test_device_rejected_pages_by_cursor_and_filters_by_time(as_role: dict[str, httpx.AsyncClient]) -> None:
    viewer = as_role["viewer"]
    first = (await viewer.get(f"/api/v1/devices/{NORTH}/rejected", params={"limit": 2})).json()
    assert len(first["items"]) == 2
    assert first["next_cursor"] is not None
    rest = (
        await viewer.get(f"/api/v1/devices/{NORTH}/rejected", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [i["received_at"] for i in rest["items"]] == [received(0).isoformat().replace("+00:00", "Z")]
    assert rest["next_cursor"] is None
    recent = (await viewer.get(f"/api/v1/devices/{NORTH}/rejected", params={"since": received(1).isoformat()})).json()
    assert len(recent["items"]) == 2
    bad = await viewer.get(f"/api/v1/devices/{NORTH}/rejected", params={"cursor": "12a"})
    assert bad.status_code == 400


@pytest.mark.usefixtures("refusals")
async def test_device_rejected_is_hidden_from_a_key_of_another_group_like_an_unknown_device(
    api_url: str, database_url: str
) -> None:
    north, south = await make_key(database_url, "north"), await make_key(database_url, "south")
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        own = await client.get(f"/api/v1/devices/{NORTH}/rejected", headers={"X-API-Key": north})
        other = await client.get(f"/api/v1/devices/{NORTH}/rejected", headers={"X-API-Key": south})
        unknown = await client.get("/api/v1/devices/nobody/rejected", headers={"X-API-Key": south})
        anonymous = await client.get(f"/api/v1/devices/{NORTH}/rejected")
    assert own.status_code == 200
    assert len(own.json()["items"]) == 3
    assert other.status_code == unknown.status_code == 404
    assert other.json()["detail"] == f"no device {NORTH!r}"
    assert anonymous.status_code == 401


@pytest.mark.usefixtures("refusals")
async def test_fleet_rejected_lists_every_refusal_for_admins_filtered_by_device_and_time(
    as_role: dict[str, httpx.AsyncClient],
) -> None:
    admin = as_role["admin"]
    everything = (await admin.get("/api/v1/rejected")).json()["items"]
    assert [i["device_id"] for i in everything] == [None, SOUTH, NORTH, NORTH, NORTH]
    assert everything[0]["topic"] == "elsewhere/telemetry"
    south = (await admin.get("/api/v1/rejected", params={"device": SOUTH})).json()["items"]
    assert [i["device_id"] for i in south] == [SOUTH]
    since = (await admin.get("/api/v1/rejected", params={"since": received(3).isoformat()})).json()["items"]
    assert [i["device_id"] for i in since] == [None, SOUTH]
    assert (await admin.get("/api/v1/rejected", params={"device": "a/b"})).status_code == 400


@pytest.mark.usefixtures("refusals")
async def test_fleet_rejected_is_refused_to_operators_viewers_and_keys(
    as_role: dict[str, httpx.AsyncClient], api_url: str, database_url: str
) -> None:
    key = await make_key(database_url, None)
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        by_key = await client.get("/api/v1/rejected", headers={"X-API-Key": key})
    assert by_key.status_code == 403
    assert (await as_role["operator"].get("/api/v1/rejected")).status_code == 403
    assert (await as_role["viewer"].get("/api/v1/rejected")).status_code == 403
