"""The device page's activity in a real browser, on the whole stack with the engine running: a route
published over MQTT becomes trips, stops, idling and geofence events (computed by the engine), shown for
the chosen range; a trip selected draws its track; an event the device sends arrives live."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import psycopg
import pytest
from psycopg.types.json import Jsonb

from engine.track import TrackPoint, device_order
from engine.trips import trips_and_stops
from tests.e2e import test_ui_operator_app as ui
from tests.e2e.conftest import eventually
from tests.e2e.test_ui_operator_app import CHROMIUM, UI_TIMEOUT_S, Watched, sign_in, until_js
from tests.integration.engine import conftest as engine_fixtures
from tests.integration.engine.scenario import broker
from tests.integration.engine.test_engine_trips import ROUTE, _sample

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"no {CHROMIUM}"),
]
# The app's and the engine tests' fixtures, named here so that pytest finds them for this module too.
browser, page, screens = ui.browser, ui.page, ui.screens
engine_process = engine_fixtures.engine_process
ENGINE_TIMEOUT_S = 60.0
# A yard around the route's middle depot (50.05° N, 10° E): the first trip ends in it, the second leaves it.
YARD = [[9.995, 50.045], [10.005, 50.045], [10.005, 50.055], [9.995, 50.055], [9.995, 50.045]]


def recent_route() -> list[TrackPoint]:
    """The hand-checked depot route (3 hours), moved to end ten minutes ago."""
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    shift = end - ROUTE[-1].ts
    return [msgspec.structs.replace(p, ts=p.ts + shift) for p in ROUTE]


async def add_yard(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO geofences (name, geometry) VALUES ('middle depot', %s)",
            (Jsonb({"type": "Polygon", "coordinates": [YARD]}),),
        )


async def publish_route(mqtt_url: str, device: str, route: list[TrackPoint]) -> None:
    host, port = broker(mqtt_url)
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        for first in range(0, len(route), 10):
            body = msgspec.json.encode({"samples": [_sample(p) for p in route[first : first + 10]]})
            await client.publish(f"fleet/v1/{device}/telemetry", body, qos=1)


async def stored_counts(database_url: str, device: str) -> tuple[int, ...]:
    """The device's stored trips, stops, idle periods and geofence events."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM trips WHERE device_id = %(d)s),"
            " (SELECT count(*) FROM stops WHERE device_id = %(d)s),"
            " (SELECT count(*) FROM idle_periods WHERE device_id = %(d)s),"
            " (SELECT count(*) FROM geofence_events WHERE device_id = %(d)s)",
            {"d": device},
        )
        row = await cur.fetchone()
        assert row is not None
        return tuple(row)


def rows(tab: Any, selector: str) -> Any:
    return until_js(tab, f"[...document.querySelectorAll({selector!r})].map((r) => r.textContent)")


async def test_ui_device_page_shows_trips_stops_idling_geofence_events_a_trip_track_and_live_events(
    page: tuple[Any, Watched],
    database_url: str,
    mqtt_url: str,
    engine_process: Any,
    screens: Path,
) -> None:
    tab, watched = page
    device = f"ui-{uuid.uuid4().hex[:8]}"
    route = recent_route()
    report = trips_and_stops(device, device_order(route))
    assert (len(report.trips), len(report.stops), len(report.idles)) == (2, 3, 3)  # the route's answer by hand
    await add_yard(database_url)  # before the engine starts: its first load has it
    engine_process("ui-activity")
    await publish_route(mqtt_url, device, route)
    await eventually(
        lambda: stored_counts(database_url, device),
        lambda counts: counts == (2, 3, 3, 2),  # the yard entered at the first trip's end, left on the second
        timeout_s=ENGINE_TIMEOUT_S,
        what="the engine's trips, stops, idling and geofence events",
    )

    await sign_in(tab, database_url, role="viewer")
    await tab.goto(tab.url.split("#")[0] + f"#/device/{device}")
    await tab.select_option("#d-range", "21600")  # 6 hours: the whole route
    trips = await eventually(
        rows(tab, "#d-trips tr.trip"), lambda found: len(found) == 2, timeout_s=UI_TIMEOUT_S, what="two trips"
    )
    second = report.trips[1]
    assert f"{second.distance_m / 1000:.2f} km" in trips[1]
    assert f"{second.max_speed_kmh:.0f} km/h" in trips[1]
    kinds = await tab.evaluate(
        "[...document.querySelectorAll('#d-stops tr.stop, #d-stops tr.idle')].map((r) => r.className)"
    )
    assert sorted(kinds) == ["idle"] * 3 + ["stop"] * 3
    assert "still there" in (await tab.text_content("#d-stops tr.stop:last-child") or "")  # the last stop lasts on
    fences = await eventually(
        rows(tab, "#d-fence-events tr.fence-event"),
        lambda found: len(found) == 2,
        timeout_s=UI_TIMEOUT_S,
        what="fence events",
    )
    assert ["middle depot" in f for f in fences] == [True, True]
    assert await tab.evaluate(
        "[...document.querySelectorAll('#d-fence-events tr.fence-event')].map((r) => r.classList[1])"
    ) == [
        "enter",
        "exit",
    ]
    today = [t for t in report.trips if t.start_at.date() == datetime.now(UTC).date()]
    summary = await tab.text_content("#d-summary") or ""
    assert summary.startswith(datetime.now(UTC).date().isoformat() + " (UTC): ")
    assert f"{len(today)} trip" in summary

    assert await tab.locator("#d-map path.trip-track").count() == 0
    await tab.click("#d-trips tr.trip:nth-child(3)")  # the second trip (row 1 is the heading)
    await tab.wait_for_selector("#d-map path.trip-track", state="attached")  # a line north: no width
    assert await tab.get_attribute("#d-trips tr.trip:nth-child(3)", "class") == "trip on"
    await tab.screenshot(path=screens / "device-activity.png", full_page=True)
    await tab.click("#d-trips tr.trip:nth-child(3)")  # again: no trip selected, the range's track alone
    await tab.wait_for_selector("#d-map path.trip-track", state="detached")

    host, port = broker(mqtt_url)
    event = {"seq": 500, "ts": datetime.now(UTC).isoformat(), "name": "harsh_braking", "data": {"decel_ms2": 6.4}}
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.publish(f"fleet/v1/{device}/events", msgspec.json.encode(event), qos=1)
    shown = await eventually(
        rows(tab, "#d-events tr.event"), lambda found: len(found) == 1, timeout_s=UI_TIMEOUT_S, what="the live event"
    )
    assert "harsh_braking" in shown[0]
    assert '{"decel_ms2":6.4}' in shown[0]
    assert any(m.get("type") == "event" and m["device_id"] == device for m in watched.received)  # live, not re-read
