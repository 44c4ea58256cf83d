"""The operator web app in a real browser (Debian's Chromium through Playwright) against the whole stack.

Every request the page makes is routed through a check that fails the test if it leaves this machine, and
console errors (Content-Security-Policy refusals included) fail it too. Screenshots of every screen are
saved under the test's temporary folder (`<basetemp>/<test>/screens/`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from api.server import running
from config import Settings
from tests.e2e.conftest import FleetStarter, eventually
from tests.e2e.test_live_corrections import send
from tests.e2e.test_presence import clear_retained_status, connect_device
from tests.e2e.test_presence_timeline import say
from tests.integration.api.conftest import TEST_JWT_SECRET, TEST_PASSWORD, add_account
from tests.integration.bridge.conftest import running_bridge

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason=f"no {CHROMIUM}: `./dev install` installs Debian's chromium"
    ),
]
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
UI_TIMEOUT_S = 15.0
SIM_DEVICES = 5
SIM_RATE_HZ = 2.0


@dataclass
class Watched:
    """What the page did that a test checks afterwards."""

    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """One Chromium for the module; each test gets a context (cookies, storage) of its own."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def screens(tmp_path: Path) -> Path:
    folder = tmp_path / "screens"
    folder.mkdir()
    return folder


@contextlib.asynccontextmanager
async def open_app(browser: Any, base_url: str) -> AsyncIterator[tuple[Any, Watched]]:
    """A fresh browser page on the app at `base_url`, every request checked to stay on this machine."""
    watched = Watched()
    context = await browser.new_context(viewport={"width": 1280, "height": 800})

    async def guard(route: Any) -> None:
        if urlsplit(route.request.url).hostname not in LOCAL_HOSTS and not route.request.url.startswith("data:"):
            watched.outside.append(route.request.url)
            await route.abort()
            return
        await route.continue_()

    await context.route("**/*", guard)
    tab = await context.new_page()
    tab.on("console", lambda msg: watched.errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: watched.errors.append(str(exc)))

    def on_socket(ws: Any) -> None:
        ws.on("framesent", lambda payload: watched.sent.append(json.loads(payload)))
        ws.on("framereceived", lambda payload: watched.received.append(json.loads(payload)))

    tab.on("websocket", on_socket)
    await tab.goto(base_url + "/")
    try:
        yield tab, watched
    finally:
        await context.close()
    assert watched.outside == [], "requests left this machine"
    assert watched.errors == [], "the page logged errors"


@pytest.fixture
async def page(browser: Any, api_url: str) -> AsyncIterator[tuple[Any, Watched]]:
    """The app in a fresh browser page."""
    async with open_app(browser, api_url) as opened:
        yield opened


async def sign_in(tab: Any, database_url: str, role: str = "admin") -> str:
    username = f"{role}-{uuid.uuid4().hex[:6]}"
    await add_account(database_url, username, role)
    await tab.fill("#login [name=username]", username)
    await tab.fill("#login [name=password]", TEST_PASSWORD)
    await tab.click("#login button[type=submit]")
    await tab.wait_for_selector("#bar:not([hidden])")
    return username


def sample(seq: int, lat: float, lon: float, **metrics: float) -> dict[str, Any]:
    ts = datetime.now(UTC).replace(microsecond=0) + timedelta(milliseconds=seq)
    return {
        "seq": seq,
        "ts": ts.isoformat(),
        "pos": {"lat": lat, "lon": lon, "speed": 42.0, "heading": 90.0},
        "metrics": metrics,
    }


def until_js(tab: Any, expression: str) -> Callable[[], Awaitable[Any]]:
    async def probe() -> Any:
        return await tab.evaluate(expression)

    return probe


async def test_ui_sign_in_map_marker_moves_and_pans_resubscribe(
    page: tuple[Any, Watched], database_url: str, mqtt_url: str, screens: Path
) -> None:
    tab, watched = page
    device = f"ui-{uuid.uuid4().hex[:8]}"
    send(mqtt_url, device, [sample(1, 52.52, 13.40, fuel=50.0)])
    await tab.screenshot(path=screens / "sign-in.png")

    await sign_in(tab, database_url)
    first = await eventually(
        until_js(tab, f"window.__fleet.marker({device!r})"), bool, timeout_s=UI_TIMEOUT_S, what="the marker"
    )
    assert (first["lat"], first["lng"]) == (52.52, 13.40)
    await tab.screenshot(path=screens / "map.png")

    send(mqtt_url, device, [sample(2, 52.53, 13.42, fuel=49.0)])
    moved = await eventually(
        until_js(tab, f"window.__fleet.marker({device!r})"),
        lambda m: (m["lat"], m["lng"]) == (52.53, 13.42),
        timeout_s=UI_TIMEOUT_S,
        what="the marker at the new position",
    )
    assert moved["status"] == "online"

    await tab.click(f'.leaflet-marker-icon[title="{device}"]')  # the popup: the latest state
    popup = await tab.wait_for_selector(".leaflet-popup-content .popup")
    assert "49.0 %" in (await popup.text_content() or "")
    await tab.screenshot(path=screens / "map-popup.png")
    await tab.keyboard.press("Escape")
    await tab.select_option("#f-status", "offline")  # filtered out: it is online
    await eventually(
        until_js(tab, f"window.__fleet.marker({device!r})"),
        lambda m: m is None,
        timeout_s=UI_TIMEOUT_S,
        what="filtered",
    )
    await tab.select_option("#f-status", "")
    await eventually(
        until_js(tab, f"window.__fleet.marker({device!r})"), bool, timeout_s=UI_TIMEOUT_S, what="shown again"
    )

    boxes_before = [m["bbox"] for m in watched.sent if m.get("action") == "subscribe" and "bbox" in m]
    assert boxes_before, "the map subscribes to its visible area"
    box = await tab.query_selector("#map")
    assert box is not None
    frame = await box.bounding_box()
    cx, cy = frame["x"] + frame["width"] / 2, frame["y"] + frame["height"] / 2
    await tab.mouse.move(cx, cy)
    await tab.mouse.down()
    await tab.mouse.move(cx - 300, cy + 100, steps=8)
    await tab.mouse.up()

    async def sent() -> list[dict[str, Any]]:
        return list(watched.sent)

    frames = await eventually(
        sent,
        lambda fs: any(f.get("action") == "subscribe" and f.get("bbox") not in (None, boxes_before[-1]) for f in fs),
        timeout_s=UI_TIMEOUT_S,
        what="a subscription to the panned area",
    )
    new_box = [f["bbox"] for f in frames if f.get("action") == "subscribe" and "bbox" in f][-1]
    assert new_box[0] > boxes_before[-1][0]  # dragged to the left: the view moved east
    assert {"action": "unsubscribe", "bbox": boxes_before[-1]} in frames  # the old area is let go


async def test_ui_fleet_table_updates_live(
    page: tuple[Any, Watched], database_url: str, mqtt_url: str, screens: Path
) -> None:
    tab, _ = page
    device = f"ui-{uuid.uuid4().hex[:8]}"
    send(mqtt_url, device, [sample(1, 52.50, 13.30, fuel=61.0)])
    await sign_in(tab, database_url, role="viewer")
    await tab.goto(tab.url.split("#")[0] + "#/table")
    row = f'#table-view [data-device="{device}"]'
    fuel = f"document.querySelector('{row} .cell:nth-child(7)')?.textContent"
    await eventually(until_js(tab, fuel), lambda text: text == "61.0", timeout_s=UI_TIMEOUT_S, what="the row")
    send(mqtt_url, device, [sample(2, 52.50, 13.31, fuel=58.5)])
    await eventually(until_js(tab, fuel), lambda text: text == "58.5", timeout_s=UI_TIMEOUT_S, what="the new fuel")
    await tab.screenshot(path=screens / "table.png")

    await tab.click("#sign-out")
    await tab.wait_for_selector("#login:not([hidden])")
    assert await tab.evaluate("sessionStorage.getItem('fleetbridge.token')") is None
    assert await tab.evaluate("window.__fleet.store.states.size + window.__fleet.store.registry.size") == 0


async def test_ui_device_page_shows_history_track_and_refusals_and_hides_what_viewers_cannot_do(
    page: tuple[Any, Watched], database_url: str, mqtt_url: str, screens: Path
) -> None:
    tab, _ = page
    device = f"ui-{uuid.uuid4().hex[:8]}"
    send(mqtt_url, device, [sample(i, 52.50 + i * 0.002, 13.30 + i * 0.003, fuel=60.0 - i) for i in range(1, 6)])
    send(mqtt_url, device, [{"seq": 9, "ts": datetime.now(UTC).isoformat(), "metrics": {"fuel": 140.0}}])
    await sign_in(tab, database_url, role="viewer")
    await tab.goto(tab.url.split("#")[0] + f"#/device/{device}")
    await eventually(
        until_js(tab, "document.querySelectorAll('#d-charts .chart canvas').length"),
        lambda n: n >= 1,
        timeout_s=UI_TIMEOUT_S,
        what="a metric chart",
    )
    await eventually(
        until_js(tab, "document.querySelector('#d-rejected')?.textContent"),
        lambda text: "outside" in (text or ""),
        timeout_s=UI_TIMEOUT_S,
        what="the refused sample",
    )
    assert await tab.evaluate("document.querySelectorAll('#d-map path.leaflet-interactive').length") >= 1
    # Online from its first stored sample on (it sends no status).
    assert await tab.text_content("#d-presence-summary") == "online 100 % of the known time · 1 interval"
    assert not await tab.locator("#d-disable").is_visible()  # a viewer may not disable devices
    await tab.click("#d-play")
    await tab.screenshot(path=screens / "device.png")

    await tab.select_option("#d-range", "604800")  # 7 days: per-interval averages from the rollups
    await eventually(
        until_js(tab, "document.querySelector('#d-charts .chart')?.dataset.source"),
        lambda source: source == "buckets",
        timeout_s=UI_TIMEOUT_S,
        what="a chart of bucket averages",
    )
    assert await tab.evaluate("document.querySelectorAll('#d-charts .chart canvas').length") >= 1


async def recorded_presence(database_url: str, device: str, changes: int) -> None:
    """Wait until the bridge has recorded `changes` presence changes of `device`."""

    async def count() -> int:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            row = await (
                await conn.execute("SELECT count(*) FROM presence_history WHERE device_id = %s", (device,))
            ).fetchone()
        return int(row[0]) if row else 0

    await eventually(count, lambda n: n >= changes, timeout_s=UI_TIMEOUT_S, what=f"{changes} presence changes")


async def test_ui_device_page_shows_presence_intervals_and_rejected_messages_with_their_reasons(
    page: tuple[Any, Watched], database_url: str, mqtt_url: str, screens: Path
) -> None:
    tab, _ = page
    device = f"ui-{uuid.uuid4().hex[:8]}"
    client = connect_device(mqtt_url, device)  # online by its retained status
    try:
        await recorded_presence(database_url, device, 1)
        say(client, device, "offline")
        await recorded_presence(database_url, device, 2)
        say(client, device, "online")
        await recorded_presence(database_url, device, 3)
        bad = {"seq": 7, "ts": datetime.now(UTC).isoformat(), "pos": {"lat": 95.0, "lon": 13.4}}
        client.publish(f"fleet/v1/{device}/telemetry", json.dumps(bad).encode(), 1).wait_for_publish(5)
        await sign_in(tab, database_url, role="viewer")
        await tab.goto(tab.url.split("#")[0] + f"#/device/{device}")
        presences = "[...document.querySelectorAll('#d-presence .seg')].map((s) => s.dataset.presence)"
        await eventually(
            until_js(tab, presences),
            lambda shown: shown == ["online", "offline", "online"],
            timeout_s=UI_TIMEOUT_S,
            what="three presence intervals",
        )
        assert "online" in (await tab.text_content("#d-presence-summary") or "")
        reason = await eventually(
            until_js(tab, "document.querySelector('#d-rejected tr:nth-child(2) td:nth-child(2)')?.textContent"),
            lambda text: "lat" in (text or ""),
            timeout_s=UI_TIMEOUT_S,
            what="the refused sample with its reason",
        )
        assert "95" in (await tab.text_content("#d-rejected tr:nth-child(2) .preview") or "")
        await tab.locator("#d-presence").scroll_into_view_if_needed()
        assert "90" in reason  # the bound the latitude broke
        await tab.screenshot(path=screens / "device-presence-rejected.png", full_page=True)
    finally:
        client.disconnect()
        client.loop_stop()
        clear_retained_status(mqtt_url, device)


async def test_ui_falls_back_to_long_polling_when_websockets_are_blocked(
    page: tuple[Any, Watched], database_url: str, mqtt_url: str, screens: Path
) -> None:
    tab, _ = page

    async def refuse(ws: Any) -> None:
        await ws.close()

    await tab.route_web_socket("**/api/v1/live**", refuse)
    device = f"ui-{uuid.uuid4().hex[:8]}"
    send(mqtt_url, device, [sample(1, 52.52, 13.40, fuel=50.0)])
    await sign_in(tab, database_url)
    await eventually(
        until_js(tab, "document.getElementById('conn').dataset.state"),
        lambda s: s == "polling",
        timeout_s=UI_TIMEOUT_S,
        what="polling mode",
    )
    await eventually(
        until_js(tab, f"window.__fleet.marker({device!r})"), bool, timeout_s=UI_TIMEOUT_S, what="the marker by polling"
    )
    send(mqtt_url, device, [sample(2, 52.53, 13.42, fuel=49.0)])
    await eventually(
        until_js(tab, f"window.__fleet.marker({device!r})"),
        lambda m: (m["lat"], m["lng"]) == (52.53, 13.42),
        timeout_s=UI_TIMEOUT_S,
        what="the marker moved by a long poll",
    )
    await tab.screenshot(path=screens / "polling.png")


async def test_ui_reconnects_after_a_drop_and_resumes_from_its_cursor(
    page: tuple[Any, Watched], database_url: str, mqtt_url: str
) -> None:
    tab, _ = page
    routes: list[Any] = []

    def relay(ws: Any) -> None:
        routes.append(ws)
        ws.connect_to_server()  # pass everything through, both ways

    await tab.route_web_socket("**/api/v1/live**", relay)
    device = f"ui-{uuid.uuid4().hex[:8]}"
    send(mqtt_url, device, [sample(1, 52.52, 13.40, fuel=50.0)])
    await sign_in(tab, database_url)
    await eventually(until_js(tab, f"window.__fleet.marker({device!r})"), bool, timeout_s=UI_TIMEOUT_S, what="marker")
    send(mqtt_url, device, [sample(2, 52.53, 13.42, fuel=49.0)])  # an update: the page now holds a cursor
    await eventually(
        until_js(tab, f"window.__fleet.marker({device!r})?.lat"),
        lambda lat: lat == 52.53,
        timeout_s=UI_TIMEOUT_S,
        what="move",
    )

    await routes[0].close(code=1006, reason="network drop")
    await eventually(until_js(tab, "0"), lambda _: len(routes) >= 2, timeout_s=UI_TIMEOUT_S, what="a reconnect")
    assert "since=" in routes[1].url  # resumed, not started over
    send(mqtt_url, device, [sample(3, 52.54, 13.44, fuel=48.0)])
    await eventually(
        until_js(tab, f"window.__fleet.marker({device!r})?.lat"),
        lambda lat: lat == 52.54,
        timeout_s=UI_TIMEOUT_S,
        what="live again after the reconnect",
    )
    await eventually(
        until_js(tab, "document.getElementById('conn').dataset.state"),
        lambda s: s == "live",
        timeout_s=UI_TIMEOUT_S,
        what="live",
    )


async def test_ui_operators_see_and_use_the_disable_button(
    page: tuple[Any, Watched], database_url: str, mqtt_url: str
) -> None:
    tab, _ = page
    device = f"ui-{uuid.uuid4().hex[:8]}"
    send(mqtt_url, device, [sample(1, 52.52, 13.40, fuel=50.0)])
    await sign_in(tab, database_url, role="operator")
    await tab.goto(tab.url.split("#")[0] + f"#/device/{device}")
    button = tab.locator("#d-disable")
    await button.wait_for(state="visible")
    assert await button.text_content() == "Disable device"
    await button.click()
    await eventually(
        until_js(tab, "document.getElementById('d-disable').textContent"),
        lambda t: t == "Enable device",
        timeout_s=UI_TIMEOUT_S,
        what="the device disabled",
    )


async def test_ui_controls_follow_the_role_of_each_sign_in_in_the_same_tab(
    page: tuple[Any, Watched], database_url: str, mqtt_url: str
) -> None:
    tab, _ = page
    device = f"ui-{uuid.uuid4().hex[:8]}"
    send(mqtt_url, device, [sample(1, 52.52, 13.40, fuel=50.0)])
    device_page = f"#/device/{device}"
    operator_controls = "[...document.querySelectorAll('[data-role]')].filter((n) => n.checkVisibility())"

    await sign_in(tab, database_url, role="viewer")
    await tab.goto(tab.url.split("#")[0] + device_page)
    await tab.wait_for_selector("#d-meta:not(:empty)")
    assert not await tab.locator("#d-disable").is_visible()
    assert await tab.evaluate(operator_controls + ".length") == 0

    await tab.click("#sign-out")
    await tab.wait_for_selector("#login:not([hidden])")
    await sign_in(tab, database_url, role="operator")  # the same tab: the page is not loaded again
    await tab.locator("#d-disable").wait_for(state="visible")
    await tab.goto(tab.url.split("#")[0] + "#/map")
    await tab.locator("#fence-tools").wait_for(state="visible")  # drawing geofences

    await tab.click("#sign-out")
    await sign_in(tab, database_url, role="viewer")
    await tab.goto(tab.url.split("#")[0] + device_page)
    await tab.wait_for_selector("#d-meta:not(:empty)")
    assert await tab.evaluate(operator_controls + ".map((n) => n.id || n.className)") == []


@contextlib.asynccontextmanager
async def api_with_tokens(bridge_settings: Settings, token_ttl_s: int, session_max_s: int) -> AsyncIterator[str]:
    """An API (and its bridge) whose tokens and sessions last as long as given (below the settings' bounds)."""
    api = replace(bridge_settings.api, jwt_secret=TEST_JWT_SECRET, token_ttl_s=token_ttl_s, session_max_s=session_max_s)
    settings = replace(bridge_settings, api=api)
    async with running_bridge(settings), running(settings) as url:
        yield url


@pytest.fixture
async def short_token_url(bridge_settings: Settings) -> AsyncIterator[str]:
    """An API whose sessions end 125 s after the login: the page asks for the password 120 s before, so at once."""
    async with api_with_tokens(bridge_settings, token_ttl_s=125, session_max_s=125) as url:
        yield url


@pytest.fixture
async def brief_token_url(bridge_settings: Settings) -> AsyncIterator[str]:
    """An API whose tokens last 5 s in sessions of an hour: the page renews them every few seconds."""
    async with api_with_tokens(bridge_settings, token_ttl_s=5, session_max_s=3600) as url:
        yield url


async def test_ui_renews_its_token_silently_and_stays_live_across_several_expiries(
    browser: Any, brief_token_url: str, database_url: str, mqtt_url: str, screens: Path
) -> None:
    device = f"ui-{uuid.uuid4().hex[:8]}"
    send(mqtt_url, device, [sample(1, 52.52, 13.40, fuel=50.0)])
    async with open_app(browser, brief_token_url) as (tab, watched):
        await sign_in(tab, database_url)
        first = await tab.evaluate("sessionStorage.getItem('fleetbridge.token')")
        await eventually(
            until_js(tab, f"window.__fleet.marker({device!r})"), bool, timeout_s=UI_TIMEOUT_S, what="marker"
        )

        async def renewals() -> list[str]:
            return [m["token"] for m in watched.sent if m.get("action") == "auth"]

        # Three renewals of a 5 s token: the first token expired at least twice over meanwhile.
        tokens = await eventually(renewals, lambda t: len(set(t)) >= 3, timeout_s=30, what="three renewals")
        assert first not in tokens
        assert await tab.locator("#reauth").is_hidden()  # never asked for the password
        assert await tab.locator("#login").is_hidden()
        assert sum(1 for m in watched.sent if m.get("action") == "subscribe") == 1  # the same connection throughout
        assert await tab.evaluate("document.getElementById('conn').dataset.state") == "live"
        send(mqtt_url, device, [sample(2, 52.53, 13.42, fuel=49.0)])
        await eventually(
            until_js(tab, f"window.__fleet.marker({device!r})?.lat"),
            lambda lat: lat == 52.53,
            timeout_s=UI_TIMEOUT_S,
            what="a live update on the renewed token",
        )
        await tab.goto(tab.url.split("#")[0] + f"#/device/{device}")  # REST with the current token
        await eventually(
            until_js(tab, "document.getElementById('d-status').textContent"),
            lambda text: text == "online",
            timeout_s=UI_TIMEOUT_S,
            what="the device page",
        )


async def test_ui_refreshes_its_token_before_expiry_on_the_open_connection(
    browser: Any, short_token_url: str, database_url: str, mqtt_url: str, screens: Path
) -> None:
    async with open_app(browser, short_token_url) as (tab, watched):
        await sign_in(tab, database_url)
        old = await tab.evaluate("sessionStorage.getItem('fleetbridge.token')")
        await tab.wait_for_selector("#reauth:not([hidden])")
        await tab.screenshot(path=screens / "reauth.png")
        await tab.fill("#reauth [name=password]", TEST_PASSWORD)
        await tab.click("#reauth button[type=submit]")
        await tab.wait_for_selector("#reauth", state="hidden")

        async def frames() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            return list(watched.sent), list(watched.received)

        sent, _ = await eventually(
            frames, lambda f: any(m.get("type") == "auth" for m in f[1]), timeout_s=UI_TIMEOUT_S, what="auth"
        )
        new = await tab.evaluate("sessionStorage.getItem('fleetbridge.token')")
        assert new != old
        assert {"action": "auth", "token": new} in sent  # in-band, on the connection already open
        assert sum(1 for m in sent if m.get("action") == "subscribe") == 1  # no reconnect was needed


async def test_ui_says_when_it_is_offline_and_when_it_is_live_again(
    page: tuple[Any, Watched], database_url: str, screens: Path
) -> None:
    tab, _ = page
    await sign_in(tab, database_url)
    state = until_js(tab, "document.getElementById('conn').dataset.state")
    await eventually(state, lambda s: s == "live", timeout_s=UI_TIMEOUT_S, what="live")
    await tab.context.set_offline(True)
    await eventually(state, lambda s: s == "offline", timeout_s=UI_TIMEOUT_S, what="offline shown")
    assert "offline" in (await tab.text_content("#conn") or "")
    await tab.screenshot(path=screens / "offline.png")
    await tab.context.set_offline(False)
    await eventually(state, lambda s: s == "live", timeout_s=UI_TIMEOUT_S, what="live again")


async def test_ui_reloads_without_a_network_and_shows_the_last_known_fleet_labelled_offline(
    page: tuple[Any, Watched], database_url: str, mqtt_url: str, screens: Path
) -> None:
    tab, watched = page
    device = f"ui-{uuid.uuid4().hex[:8]}"
    send(mqtt_url, device, [sample(1, 52.52, 13.40, fuel=50.0)])
    await sign_in(tab, database_url)
    await eventually(until_js(tab, f"window.__fleet.marker({device!r})"), bool, timeout_s=UI_TIMEOUT_S, what="marker")
    await eventually(
        until_js(tab, "navigator.serviceWorker.controller?.state ?? null"),
        lambda state: state == "activated",
        timeout_s=UI_TIMEOUT_S,
        what="the service worker in control",
    )
    await eventually(
        until_js(tab, "window.__fleet.lastKnown.savedAt"), bool, timeout_s=UI_TIMEOUT_S, what="the fleet saved"
    )

    await tab.context.set_offline(True)
    shell = await tab.reload()
    assert shell is not None
    assert shell.from_service_worker  # the shell came from the worker's cache
    banner = await tab.wait_for_selector("#offline:not([hidden])", timeout=UI_TIMEOUT_S * 1000)
    assert (await banner.text_content() or "").startswith("offline — last known at ")
    restored = await eventually(
        until_js(tab, f"window.__fleet.marker({device!r})"), bool, timeout_s=UI_TIMEOUT_S, what="the saved marker"
    )
    assert (restored["lat"], restored["lng"]) == (52.52, 13.40)
    assert await tab.evaluate("document.body.classList.contains('readonly')")
    await tab.goto(tab.url.split("#")[0] + "#/table")
    await tab.wait_for_selector(f'#table-view [data-device="{device}"]')
    await tab.screenshot(path=screens / "offline-last-known.png")

    await tab.context.set_offline(False)
    await eventually(
        until_js(tab, "document.getElementById('conn').dataset.state"),
        lambda s: s == "live",
        timeout_s=UI_TIMEOUT_S,
        what="live again",
    )
    await tab.wait_for_selector("#offline", state="hidden")
    send(mqtt_url, device, [sample(2, 52.50, 13.30, fuel=47.5)])
    fuel = f"document.querySelector('#table-view [data-device=\"{device}\"] .cell:nth-child(7)')?.textContent"
    await eventually(until_js(tab, fuel), lambda text: text == "47.5", timeout_s=UI_TIMEOUT_S, what="a live update")
    # Chromium logs each request the emulated offline network refused (the API's, while offline): the
    # test's doing, not the page's; any other error still fails the test.
    offline_refusals = [e for e in watched.errors if e.endswith("net::ERR_INTERNET_DISCONNECTED")]
    assert offline_refusals
    watched.errors[:] = [e for e in watched.errors if e not in offline_refusals]


async def test_ui_fleet_table_keeps_only_the_rows_in_view_for_ten_thousand_devices(
    page: tuple[Any, Watched], database_url: str, screens: Path
) -> None:
    tab, _ = page
    await sign_in(tab, database_url, role="viewer")
    await tab.goto(tab.url.split("#")[0] + "#/table")
    # Registry rows fed to the page's own store: this measures the table, not the stack.
    await tab.evaluate(
        """() => window.__fleet.store.register(Array.from({length: 10000}, (_, i) =>
             ({id: "bulk-" + String(i).padStart(5, "0"), kind: "truck", name: null, group: i % 2 ? "north" : "south"})))"""
    )
    # The module's database also holds the devices other tests registered: the search keeps to the bulk rows.
    await tab.fill("#f-search", "bulk-")
    count = until_js(tab, "document.getElementById('table-count').textContent")
    await eventually(count, lambda t: t == "10000 devices", timeout_s=UI_TIMEOUT_S, what="every row counted")
    rows = "document.querySelectorAll('#table-view [data-device]').length"
    assert 0 < await tab.evaluate(rows) < 100
    await tab.evaluate("document.getElementById('table-view').scrollTop = 1e9")
    await eventually(
        until_js(tab, "document.querySelector('#table-view [data-device=\"bulk-09999\"]') !== null"),
        bool,
        timeout_s=UI_TIMEOUT_S,
        what="the last row after scrolling to the end",
    )
    assert await tab.evaluate(rows) < 100
    await tab.select_option("#f-group", "north")
    await eventually(count, lambda t: t == "5000 devices", timeout_s=UI_TIMEOUT_S, what="the group filter")
    await tab.fill("#f-search", "bulk-0000")
    await eventually(count, lambda t: t == "5 devices", timeout_s=UI_TIMEOUT_S, what="the search")
    await tab.screenshot(path=screens / "table-10000.png")


async def test_ui_map_follows_the_simulated_fleet_clustered_when_zoomed_out(
    page: tuple[Any, Watched], database_url: str, start_fleet: FleetStarter, screens: Path
) -> None:
    tab, _ = page
    fleet = start_fleet(devices=SIM_DEVICES, rate_hz=SIM_RATE_HZ)
    ids = [device.device_id for device in fleet.devices]
    assert await asyncio.to_thread(fleet.wait_connected, UI_TIMEOUT_S), "simulated trucks did not connect"
    runner = asyncio.create_task(asyncio.to_thread(fleet.run), name="ui-fleet")
    try:
        await sign_in(tab, database_url)
        markers = f"{json.dumps(ids)}.map((id) => window.__fleet.marker(id))"
        first = await eventually(
            until_js(tab, markers), all, timeout_s=UI_TIMEOUT_S, what="a marker per simulated truck"
        )
        await eventually(
            until_js(tab, markers),
            lambda ms: all((m["lat"], m["lng"]) != (f["lat"], f["lng"]) for m, f in zip(ms, first, strict=True)),
            timeout_s=UI_TIMEOUT_S,
            what="every truck's marker moved as it drove",
        )
        await tab.screenshot(path=screens / "map-fleet.png")
        for _ in range(4):
            await tab.click(".leaflet-control-zoom-out")
        await tab.wait_for_selector(".marker-cluster")  # close trucks drawn as one cluster with a count
        await tab.wait_for_selector(".leaflet-zoom-anim", state="detached")  # the picture, not an animation frame
        await tab.screenshot(path=screens / "map-zoomed-out.png")
    finally:
        fleet.stop()
        await runner


async def test_ui_a_new_area_after_a_resumed_connection_gets_snapshots_not_only_a_replay(
    page: tuple[Any, Watched], database_url: str, mqtt_url: str
) -> None:
    tab, _ = page
    routes: list[Any] = []

    def relay(ws: Any) -> None:
        routes.append(ws)
        ws.connect_to_server()

    await tab.route_web_socket("**/api/v1/live**", relay)
    parked = f"ui-{uuid.uuid4().hex[:8]}"
    send(mqtt_url, parked, [sample(1, 52.52, 14.2, fuel=50.0)])  # east of the first view (to 13.93°); it stays put
    moving = f"ui-{uuid.uuid4().hex[:8]}"
    send(mqtt_url, moving, [sample(1, 52.52, 13.40, fuel=50.0)])
    await sign_in(tab, database_url)
    await eventually(until_js(tab, f"window.__fleet.marker({moving!r})"), bool, timeout_s=UI_TIMEOUT_S, what="marker")
    assert await tab.evaluate(f"window.__fleet.marker({parked!r})") is None  # outside the view: not subscribed
    send(mqtt_url, moving, [sample(2, 52.53, 13.42, fuel=49.0)])  # the page's cursor is now past the parked truck
    await eventually(
        until_js(tab, f"window.__fleet.marker({moving!r})?.lat"),
        lambda lat: lat == 52.53,
        timeout_s=UI_TIMEOUT_S,
        what="move",
    )
    await routes[0].close(code=1006, reason="network drop")
    await eventually(until_js(tab, "0"), lambda _: len(routes) >= 2, timeout_s=UI_TIMEOUT_S, what="a reconnect")
    await eventually(
        until_js(tab, "document.getElementById('conn').dataset.state"),
        lambda s: s == "live",
        timeout_s=UI_TIMEOUT_S,
        what="live",
    )

    await tab.click(".leaflet-control-zoom-out")  # the view (about 1.8° wide) now holds the parked truck

    where = await eventually(
        until_js(tab, f"window.__fleet.marker({parked!r})"), bool, timeout_s=UI_TIMEOUT_S, what="the parked truck shown"
    )
    assert (where["lat"], where["lng"]) == (52.52, 14.2)


async def test_ui_signs_out_when_the_server_ends_the_live_connection_for_a_deleted_account(
    page: tuple[Any, Watched], database_url: str
) -> None:
    tab, _ = page
    username = await sign_in(tab, database_url)
    await eventually(
        until_js(tab, "document.getElementById('conn').dataset.state"),
        lambda s: s == "live",
        timeout_s=UI_TIMEOUT_S,
        what="live",
    )
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("DELETE FROM users WHERE username = %s", (username,))

    await tab.wait_for_selector("#login:not([hidden])", timeout=UI_TIMEOUT_S * 1000)  # closed with 4401
    assert await tab.text_content("#login-error") == "Your session ended: sign in again."
    assert await tab.evaluate("sessionStorage.getItem('fleetbridge.token')") is None


async def raise_alert(database_url: str, device: str) -> int:
    """A rule and an alert of it on `device`, with its `raised` change, written as the engine writes them."""
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=40)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn, conn.transaction():
        await conn.execute("INSERT INTO devices (id) VALUES (%s) ON CONFLICT DO NOTHING", (device,))
        rule = await (
            await conn.execute(
                "INSERT INTO alert_rules (name, metric, op, threshold, for_s, severity)"
                " VALUES ('engine overheating', 'engine_temp', '>', 110, 30, 'critical') RETURNING id"
            )
        ).fetchone()
        assert rule is not None
        alert = await (
            await conn.execute(
                "INSERT INTO alerts (rule_id, device_id, started_at, raised_at, severity, state, value, message)"
                " VALUES (%s, %s, %s, %s, 'critical', 'active', 115,"
                " 'engine overheating: engine_temp > 110 for 30 s (read 115)') RETURNING id",
                (rule[0], device, started, started + timedelta(seconds=30)),
            )
        ).fetchone()
        assert alert is not None
        await conn.execute("INSERT INTO alert_events (alert_id, kind) VALUES (%s, 'raised')", (alert[0],))
    return int(alert[0])


async def test_ui_alerts_arrive_live_and_an_acknowledgement_shows_in_every_browser_but_viewers_cannot_act(
    browser: Any, api_url: str, database_url: str, mqtt_url: str, screens: Path
) -> None:
    device = f"ui-{uuid.uuid4().hex[:8]}"
    send(mqtt_url, device, [sample(1, 52.52, 13.40, engine_temp=115.0)])
    async with open_app(browser, api_url) as (operator, _), open_app(browser, api_url) as (viewer, seen):
        who = await sign_in(operator, database_url, role="operator")
        await sign_in(viewer, database_url, role="viewer")
        for tab in (operator, viewer):
            await tab.goto(tab.url.split("#")[0] + "#/alerts")
            await eventually(
                until_js(tab, "window.__fleet.alerts.loaded"), bool, timeout_s=UI_TIMEOUT_S, what="alerts read"
            )
        alert = await raise_alert(database_url, device)  # after both pages read the alerts: only live can tell

        row = f'#a-rows tr[data-alert="{alert}"]'
        state = f"document.querySelector('{row} .a-state')?.textContent"
        for tab in (operator, viewer):
            await eventually(until_js(tab, state), lambda s: s == "active", timeout_s=UI_TIMEOUT_S, what="raised")
        assert await viewer.text_content(f"{row} .a-device a") == device
        assert await viewer.get_attribute(f"{row} .a-device a", "href") == f"#/device/{device}"
        assert "engine_temp > 110" in (await viewer.text_content(f"{row} .a-message") or "")
        assert await viewer.text_content(f"{row} .a-severity") == "critical"
        assert await viewer.locator(f"{row} button").count() == 0  # no controls at all for a viewer
        assert await viewer.is_hidden("#a-actions-head")

        await operator.fill(f"{row} .a-actions input", "driver called, pulling over")
        await operator.click(f"{row} .ack")
        await eventually(
            until_js(viewer, state), lambda s: s == "acknowledged", timeout_s=UI_TIMEOUT_S, what="acknowledged"
        )
        assert who in (await viewer.text_content(f"{row} .a-handled") or "")
        assert any(m.get("type") == "alert" and m["event"] == "acknowledged" for m in seen.received)
        await operator.wait_for_selector(f"{row} .ack", state="hidden")  # only an active alert is acknowledged
        await viewer.screenshot(path=screens / "alerts-viewer.png")
        await operator.screenshot(path=screens / "alerts-operator.png")
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            comment = await (
                await conn.execute("SELECT author, body FROM alert_comments WHERE alert_id = %s", (alert,))
            ).fetchone()
        assert comment == (who, "driver called, pulling over")

        await viewer.select_option("#a-state", "active")  # acknowledged is no longer active
        await eventually(
            until_js(viewer, f"document.querySelector('{row}') === null"),
            bool,
            timeout_s=UI_TIMEOUT_S,
            what="filtered",
        )

        await viewer.goto(viewer.url.split("#")[0] + "#/table")  # the fleet table counts open alerts
        count = f"document.querySelector('#table-view [data-device=\"{device}\"] .cell:nth-child(9)')?.textContent"
        await eventually(until_js(viewer, count), lambda t: t == "1", timeout_s=UI_TIMEOUT_S, what="the count")
        await operator.click(f"{row} .clear")
        await eventually(until_js(viewer, count), lambda t: t == "", timeout_s=UI_TIMEOUT_S, what="no open alerts")
