"""Geofences on the fleet map in real browsers: an operator draws a polygon and a circle, renames and
reshapes one, deletes the other and is told why a bad shape is refused, all through the REST API; a viewer
sees the fences and no way to change them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import test_ui_operator_app as ui
from tests.e2e.conftest import eventually
from tests.e2e.test_ui_operator_app import CHROMIUM, UI_TIMEOUT_S, Watched, open_app, sign_in, until_js

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"no {CHROMIUM}"),
]
# The app tests' fixtures, named here so that pytest finds them for this module too.
browser, page, screens = ui.browser, ui.page, ui.screens
# Metres per pixel at the map's first view (zoom 11, 52.52° N): 156543 m x cos(52.52°) / 2^11.
METRES_PER_PX = 46.5


def shown(tab: Any) -> Any:
    return until_js(tab, "window.__fleet.fences()")


async def hide_the_trucks(tab: Any) -> None:
    """Filter every truck off the map: those other tests left in the session's Redis may be anywhere on it,
    and a truck's marker would take a click meant for the map."""
    await tab.fill("#f-search", "no device has this id")
    markers = "document.querySelectorAll('#map .leaflet-marker-icon').length"
    await eventually(until_js(tab, markers), lambda n: n == 0, timeout_s=UI_TIMEOUT_S, what="no trucks shown")


async def centre_of_map(tab: Any) -> tuple[float, float]:
    box = await (await tab.query_selector("#map")).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


async def test_ui_operators_draw_edit_and_delete_geofences_on_the_map_and_viewers_only_see_them(
    page: tuple[Any, Watched], browser: Any, api_url: str, database_url: str, http: httpx.AsyncClient, screens: Path
) -> None:
    tab, watched = page
    await sign_in(tab, database_url, role="operator")
    await tab.locator("#fence-tools").wait_for(state="visible")
    await eventually(shown(tab), lambda f: f == [], timeout_s=UI_TIMEOUT_S, what="no fences yet")
    await hide_the_trucks(tab)
    cx, cy = await centre_of_map(tab)

    # A polygon: four clicks, the last a double-click that closes it.
    await tab.click("#fence-polygon")
    for dx, dy in ((-200, -150), (200, -150), (200, 150)):
        await tab.mouse.click(cx + dx, cy + dy)
    await tab.mouse.dblclick(cx - 200, cy + 150)
    await tab.locator("#fence-finish").wait_for(state="hidden")  # closed
    assert await tab.locator("#map .fence-handle").count() == 4
    await tab.fill("#fence-form [name=name]", "yard north")
    await tab.click("#fence-save")
    fences = await eventually(shown(tab), lambda f: len(f) == 1, timeout_s=UI_TIMEOUT_S, what="the polygon saved")
    assert fences[0]["name"] == "yard north"
    assert fences[0]["kind"] == "Polygon"
    polygon = (await http.get(f"/api/v1/geofences/{fences[0]['id']}")).json()
    ring = polygon["geometry"]["coordinates"][0]
    assert len(ring) == 5
    assert ring[0] == ring[-1]
    west, east = ring[0][0], ring[1][0]
    assert west < 13.405 < east  # around the map's centre
    assert abs((east - west) * 1456 - 400) < 4  # 400 px wide at 1456 px per degree of longitude (zoom 11)

    # A circle: its centre, then its edge 100 px east.
    await tab.click("#fence-circle")
    await tab.mouse.click(cx - 400, cy)
    await tab.mouse.click(cx - 300, cy)
    assert await tab.input_value("#fence-form [name=radius]") != ""
    await tab.fill("#fence-form [name=name]", "depot")
    await tab.click("#fence-save")
    fences = await eventually(shown(tab), lambda f: len(f) == 2, timeout_s=UI_TIMEOUT_S, what="the circle saved")
    depot = next(f for f in fences if f["name"] == "depot")
    assert depot["kind"] == "Point"
    circle = (await http.get(f"/api/v1/geofences/{depot['id']}")).json()
    assert abs(circle["properties"]["radius_m"] - 100 * METRES_PER_PX) < 150
    await tab.screenshot(path=screens / "geofences.png")

    # The polygon edited: renamed, and its first vertex dragged 60 px north.
    await tab.mouse.click(cx + 170, cy + 130)  # inside the polygon
    await tab.locator("#fence-form").wait_for(state="visible")
    assert await tab.input_value("#fence-form [name=name]") == "yard north"
    handle = await (await tab.query_selector("#map .fence-handle")).bounding_box()
    hx, hy = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    await tab.mouse.move(hx, hy)
    await tab.mouse.down()
    await tab.mouse.move(hx, hy - 60, steps=6)
    await tab.mouse.up()
    await tab.fill("#fence-form [name=name]", "yard south")
    await tab.click("#fence-save")
    await eventually(
        shown(tab),
        lambda f: sorted(x["name"] for x in f) == ["depot", "yard south"],
        timeout_s=UI_TIMEOUT_S,
        what="renamed",
    )
    edited = (await http.get(f"/api/v1/geofences/{polygon['id']}")).json()
    moved = edited["geometry"]["coordinates"][0]
    assert moved[0][1] > ring[0][1] + 50 * METRES_PER_PX / 111_000  # further north
    assert moved[0] == moved[-1]
    assert moved[1:4] == ring[1:4]  # the other vertices stayed

    # A ring that crosses itself is refused, with the server's reason.
    await tab.click("#fence-polygon")
    for dx, dy in ((-200, -150), (200, 150), (200, -150), (-200, 150)):
        await tab.mouse.click(cx + dx, cy + dy)
    await tab.click("#fence-finish")
    await tab.fill("#fence-form [name=name]", "bow tie")
    await tab.click("#fence-save")
    await eventually(
        until_js(tab, "document.getElementById('fence-error').textContent"),
        lambda text: "intersects itself" in text,
        timeout_s=UI_TIMEOUT_S,
        what="the refusal",
    )
    await tab.click("#fence-cancel")
    # Chromium logs the refused request: the test's doing, not the page's; any other error still fails it.
    refusals = [e for e in watched.errors if e.endswith("status of 400 (Bad Request)")]
    assert len(refusals) == 1
    watched.errors[:] = [e for e in watched.errors if e not in refusals]
    assert len(await tab.evaluate("window.__fleet.fences()")) == 2

    # The circle deleted, in two clicks.
    await tab.mouse.click(cx - 400, cy + 30)
    await tab.locator("#fence-delete").wait_for(state="visible")
    assert await tab.input_value("#fence-form [name=name]") == "depot"
    await tab.click("#fence-delete")
    assert await tab.text_content("#fence-delete") == "Really delete?"
    await tab.click("#fence-delete")
    await eventually(shown(tab), lambda f: len(f) == 1, timeout_s=UI_TIMEOUT_S, what="the circle deleted")
    assert (await http.get(f"/api/v1/geofences/{depot['id']}")).status_code == 404

    async with open_app(browser, api_url) as (viewer, _):
        await sign_in(viewer, database_url, role="viewer")
        fences = await eventually(shown(viewer), lambda f: len(f) == 1, timeout_s=UI_TIMEOUT_S, what="the fence")
        assert fences[0]["name"] == "yard south"
        assert await viewer.locator("#map path.fence").count() == 1
        assert not await viewer.locator("#fence-tools").is_visible()
        await hide_the_trucks(viewer)
        vx, vy = await centre_of_map(viewer)
        await viewer.mouse.click(vx + 170, vy + 130)
        assert not await viewer.locator("#fence-form").is_visible()
        await viewer.screenshot(path=screens / "geofences-viewer.png")
