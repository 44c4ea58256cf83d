"""A device's presence over time (`GET /api/v1/devices/{id}/presence`) after real changes through the broker."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest

from models.events import Status
from tests.e2e.conftest import eventually
from tests.e2e.test_presence import clear_retained_status, connect_device

pytestmark = pytest.mark.e2e


def say(client: Any, device_id: str, state: str) -> None:
    status = msgspec.json.encode(Status(state=state, ts=datetime.now(UTC)))  # type: ignore[arg-type]
    client.publish(f"fleet/v1/{device_id}/status", status, 1, True).wait_for_publish(5)


async def timeline(http: httpx.AsyncClient, device_id: str, **params: str) -> dict[str, Any]:
    response = await http.get(f"/api/v1/devices/{device_id}/presence", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_presence_changes_become_contiguous_intervals(mqtt_url: str, http: httpx.AsyncClient) -> None:
    device_id = f"tl-{uuid.uuid4().hex[:8]}"
    before = datetime.now(UTC) - timedelta(seconds=1)
    client = connect_device(mqtt_url, device_id)  # online
    try:
        await eventually(
            lambda: timeline(http, device_id),
            lambda t: len(t["intervals"]) == 1,
            timeout_s=10,
            what="online recorded",
        )
        for state, count in (("offline", 2), ("online", 3)):
            say(client, device_id, state)
            await eventually(
                lambda: timeline(http, device_id),
                lambda t, n=count: len(t["intervals"]) == n,  # type: ignore[misc]
                timeout_s=10,
                what=f"{state} recorded",
            )
    finally:
        client.disconnect()
        client.loop_stop()
        clear_retained_status(mqtt_url, device_id)

    whole = await timeline(http, device_id)
    spans = whole["intervals"]
    assert [(s["presence"], s["source"]) for s in spans] == [
        ("online", "status"),
        ("offline", "status"),
        ("online", "status"),
    ]
    assert all(a["to"] == b["from"] for a, b in itertools.pairwise(spans))  # no gaps, no overlaps
    assert datetime.fromisoformat(spans[0]["from"]) >= before
    assert spans[-1]["to"] == whole["to"]
    assert whole["truncated"] is False

    # A window starting inside the offline stretch starts offline, at the window's start.
    middle = spans[1]["from"]
    later = await timeline(http, device_id, **{"from": middle})
    assert [s["presence"] for s in later["intervals"]] == ["offline", "online"]
    assert later["intervals"][0]["from"] == later["from"]


async def test_presence_timeline_refuses_bad_windows_and_hidden_devices(http: httpx.AsyncClient) -> None:
    url = "/api/v1/devices/tl-none/presence"
    assert (await http.get(url, params={"from": "yesterday"})).status_code == 400
    assert (
        await http.get(url, params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"})
    ).status_code == 400
    assert (await http.get("/api/v1/devices/bad id!/presence")).status_code == 400
    empty = await http.get(url)
    assert empty.status_code == 200
    assert empty.json()["intervals"] == []
    key = (await http.post("/api/v1/api-keys", json={"name": "north-only", "group": "north"})).json()["key"]
    assert (await http.get(url, headers={"X-API-Key": key})).status_code == 404
