"""Commands from the device page in a real browser, on the whole command path: an API with its broker
account, a bridge recording the answers, and simulated trucks that obey. An operator sends commands and
watches each transition arrive live; a dangerous one needs a second, explicit click; refusals show the
server's reason; a queued command is cancelled from the page; a viewer sees the list and nothing to act."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.server import running
from config import Settings
from firmware_sim.fleet import Fleet, FleetOptions
from tests.e2e import test_ui_operator_app as ui
from tests.e2e.conftest import eventually
from tests.e2e.test_ui_operator_app import CHROMIUM, UI_TIMEOUT_S, Watched, open_app, sign_in, until_js
from tests.integration.api.conftest import TEST_JWT_SECRET
from tests.integration.api.test_api_commands import admin_client, fleet_running, online, unique_prefix
from tests.integration.bridge.conftest import running_bridge

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"no {CHROMIUM}"),
]
# The app's fixtures, named here so that pytest finds them for this module too.
browser, screens = ui.browser, ui.screens
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
LIFECYCLE = ["queued", "sent", "received", "succeeded"]


@pytest.fixture
async def command_url(bridge_settings: Settings) -> AsyncIterator[str]:
    """An API that sends commands (its broker account) and a bridge that records the devices' answers."""
    settings = replace(
        bridge_settings,
        api=replace(bridge_settings.api, jwt_secret=TEST_JWT_SECRET, mqtt_url=bridge_settings.mqtt.url),
        commands=replace(bridge_settings.commands, dispatch_interval_s=0.1),
    )
    async with running_bridge(settings), running(settings) as url:
        yield url


@pytest.fixture
async def page(browser: Any, command_url: str) -> AsyncIterator[tuple[Any, Watched]]:
    async with open_app(browser, command_url) as opened:
        yield opened


@pytest.fixture
async def admin(command_url: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    client = await admin_client(command_url, database_url)
    yield client
    await client.aclose()


@pytest.fixture
def truck(mqtt_url: str) -> Iterator[tuple[str, Fleet]]:
    """A simulated truck, connected, that obeys commands."""
    prefix = unique_prefix("uicmd")
    with fleet_running(mqtt_url, FleetOptions(devices=1, prefix=prefix, rate_hz=2.0)) as fleet:
        yield f"{prefix}0001", fleet


async def register_away(database_url: str) -> str:
    """A truck in the registry that is not connected."""
    device = f"{unique_prefix('uiaway')}1"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO devices (id, kind) VALUES (%s, 'truck')", (device,))
    return device


async def open_device(tab: Any, watched: Watched, device: str) -> None:
    """The device page, once its live subscription holds (so no transition is missed)."""
    before = len(watched.received)
    await tab.goto(tab.url.split("#")[0] + f"#/device/{device}")
    await tab.wait_for_selector("#d-meta:not(:empty)")
    await eventually(
        lambda: _subscribed_since(watched, before), bool, timeout_s=UI_TIMEOUT_S, what="the device subscribed"
    )


async def _subscribed_since(watched: Watched, before: int) -> bool:
    return any(m.get("type") == "subscribed" for m in watched.received[before:])


def rows(tab: Any) -> Any:
    """The commands shown: id, state and the states of the trail, newest first."""
    return until_js(
        tab,
        "[...document.querySelectorAll('#c-list tr.command')].map((r) => ({id: r.dataset.id, state: r.dataset.state,"
        " text: r.textContent, trail: [...r.querySelectorAll('.c-step')].map((s) => s.dataset.state)}))",
    )


async def shown_reaching(tab: Any, count: int, state: str) -> list[dict[str, Any]]:
    """Wait until `count` commands are shown and the newest is in `state`."""
    return await eventually(
        rows(tab),
        lambda found: len(found) == count and found[0]["state"] == state,
        timeout_s=UI_TIMEOUT_S,
        what=f"{count} commands shown, the newest {state}",
    )


def pushed_states(watched: Watched, command_id: str) -> list[str]:
    return [m["state"] for m in watched.received if m.get("type") == "command" and m["command"]["id"] == command_id]


async def _pushed(watched: Watched, command_id: str) -> list[str]:
    return pushed_states(watched, command_id)


async def test_ui_operator_sends_commands_and_sees_every_transition_live(
    page: tuple[Any, Watched],
    truck: tuple[str, Fleet],
    admin: httpx.AsyncClient,
    database_url: str,
    screens: Path,
) -> None:
    tab, watched = page
    device, fleet = truck
    await online(admin, device)
    keys: list[str] = []
    tab.on(
        "request",
        lambda r: (
            keys.append(r.headers.get("idempotency-key", ""))
            if r.method == "POST" and r.url.endswith("/commands")
            else None
        ),
    )
    await sign_in(tab, database_url, role="operator")
    await open_device(tab, watched, device)
    await tab.locator("#c-form").wait_for(state="visible")
    offered = await tab.evaluate("[...document.querySelectorAll('#c-name option')].map((o) => o.value)")
    assert offered == ["ping", "set_report_interval", "reboot", "immobilise", "mobilise", "unlock"]  # a truck's

    await tab.select_option("#c-name", "ping")
    await tab.click("#c-send")
    ping = (await shown_reaching(tab, 1, "succeeded"))[0]
    assert ping["trail"] == LIFECYCLE  # every state shown, in order
    assert '"pong"' in ping["text"]
    await eventually(  # each transition pushed live (the row may show one early: a message's command may be further on)
        lambda: _pushed(watched, ping["id"]),
        lambda s: sorted(s) == sorted(LIFECYCLE),
        timeout_s=UI_TIMEOUT_S,
        what="pushed",
    )
    assert len(keys) == 1
    assert UUID.match(keys[0])

    # An argument from the catalogue's spec: bounded as the catalogue says.
    await tab.select_option("#c-name", "set_report_interval")
    interval = tab.locator("#c-args input[data-arg=interval_s]")
    assert (await interval.get_attribute("min"), await interval.get_attribute("max")) == ("1", "3600")
    await interval.fill("0")
    await tab.click("#c-send")  # out of range: the browser keeps the form back
    await interval.fill("2")
    await tab.click("#c-send")
    newest = (await shown_reaching(tab, 2, "succeeded"))[0]
    assert 'set_report_interval {"interval_s":2}' in newest["text"]
    assert fleet.report_interval_s(device) == 2.0
    assert len(keys) == 2  # one request each: the refused 0 never left the page
    assert keys[0] != keys[1]
    await tab.screenshot(path=screens / "device-commands.png", full_page=True)

    # A transition older than what is shown (a late message) never moves a command back.
    command = (await admin.get(f"/api/v1/commands/{newest['id']}")).json()
    old = (datetime.fromisoformat(command["created_at"]) - timedelta(seconds=1)).isoformat()
    stale = {**command, "state": "sent", "updated_at": old, "transitions": []}
    await tab.evaluate(
        "(m) => window.__fleet.live.receive(m)", {"type": "command", "state": "sent", "at": old, "command": stale}
    )
    assert (await rows(tab)())[0]["state"] == "succeeded"

    # The first answer lost on the way back: the page sends again with the same key, and the server
    # answers with the command it made — one command, not two.
    tries: list[str] = []

    async def lose_first_answer(route: Any) -> None:
        if route.request.method != "POST":
            await route.continue_()
            return
        tries.append(route.request.headers.get("idempotency-key", ""))
        if len(tries) > 1:
            await route.continue_()
            return
        await route.fetch()  # the server makes the command
        await route.abort()  # and the page never hears of it

    await tab.route(f"**/api/v1/devices/{device}/commands", lose_first_answer)
    await tab.select_option("#c-name", "ping")
    await tab.click("#c-send")
    await shown_reaching(tab, 3, "succeeded")  # live: the command the lost answer named
    await tab.wait_for_selector("#c-send:not([disabled])")  # the send, retried, is over
    assert len(tries) == 2
    assert tries[0] == tries[1]  # the retry: the same key
    assert tries[0] not in keys[:2]
    listed = (await admin.get(f"/api/v1/devices/{device}/commands")).json()["items"]
    assert [c["name"] for c in listed] == ["ping", "set_report_interval", "ping"]
    assert [c.name for c in fleet.devices[0].received_commands()] == ["ping", "set_report_interval", "ping"]
    assert await tab.text_content("#c-error") == ""
    lost = [e for e in watched.errors if e.endswith("net::ERR_FAILED")]
    assert len(lost) == 1
    watched.errors[:] = [e for e in watched.errors if e not in lost]  # the lost answer: the test's doing


async def test_ui_dangerous_commands_need_a_second_click_and_an_offline_truck_is_refused_with_its_presence(
    page: tuple[Any, Watched],
    truck: tuple[str, Fleet],
    admin: httpx.AsyncClient,
    database_url: str,
    screens: Path,
) -> None:
    tab, watched = page
    device, fleet = truck
    await online(admin, device)
    await sign_in(tab, database_url, role="operator")
    await open_device(tab, watched, device)
    await tab.locator("#c-form").wait_for(state="visible")

    await tab.select_option("#c-name", "immobilise")
    await tab.click("#c-send")
    confirm = tab.locator("#c-confirm")
    await confirm.wait_for(state="visible")
    assert await confirm.text_content() == f"Really immobilise {device}?"
    assert (await admin.get(f"/api/v1/devices/{device}/commands")).json()["items"] == []  # nothing sent yet
    await tab.select_option("#c-name", "unlock")  # changing the form withdraws the confirmation
    await confirm.wait_for(state="hidden")
    await tab.select_option("#c-name", "immobilise")
    await tab.click("#c-send")
    await tab.screenshot(path=screens / "device-command-confirm.png")
    await confirm.click()
    done = (await shown_reaching(tab, 1, "succeeded"))[0]
    assert done["trail"] == LIFECYCLE
    assert '"immobilised":true' in done["text"]
    assert await tab.evaluate("document.querySelector('#c-list tr.command').classList.contains('dangerous')")
    assert [c.name for c in fleet.devices[0].received_commands()] == ["immobilise"]

    away = await register_away(database_url)
    await open_device(tab, watched, away)
    await tab.select_option("#c-name", "immobilise")
    await tab.click("#c-send")
    await tab.click("#c-confirm")
    error = await eventually(
        until_js(tab, "document.getElementById('c-error').textContent"),
        bool,
        timeout_s=UI_TIMEOUT_S,
        what="the refusal",
    )
    assert f"'immobilise' is dangerous and device '{away}' is not online" in error
    assert "(presence: unknown" in error  # registered, never connected: the 409's presence, shown
    assert (await rows(tab)()) == []
    assert (await admin.get(f"/api/v1/devices/{away}/commands")).json()["items"] == []
    # Chromium logs the refused request: the test's doing, not the page's; any other error still fails it.
    refusals = [e for e in watched.errors if e.endswith("status of 409 (Conflict)")]
    assert len(refusals) == 1
    watched.errors[:] = [e for e in watched.errors if e not in refusals]


async def test_ui_operator_cancels_a_queued_command_and_a_viewer_sees_commands_but_cannot_act(
    page: tuple[Any, Watched], admin: httpx.AsyncClient, database_url: str, screens: Path
) -> None:
    tab, watched = page
    away = await register_away(database_url)
    await sign_in(tab, database_url, role="operator")
    await open_device(tab, watched, away)
    await tab.select_option("#c-name", "reboot")
    await tab.fill("#c-expiry", "10")
    await tab.click("#c-send")
    queued = (await shown_reaching(tab, 1, "queued"))[0]
    command = (await admin.get(f"/api/v1/commands/{queued['id']}")).json()
    expires_in = datetime.fromisoformat(command["expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=9) < expires_in <= timedelta(minutes=10)  # the expiry chosen, not the default
    await tab.select_option("#c-name", "ping")
    await tab.click("#c-send")
    await shown_reaching(tab, 2, "queued")

    await tab.click(f"#c-list tr[data-id='{queued['id']}'] button.c-cancel")
    shown = await eventually(
        rows(tab), lambda found: found[1]["state"] == "cancelled", timeout_s=UI_TIMEOUT_S, what="cancelled"
    )
    assert shown[1]["trail"] == ["queued", "cancelled"]
    assert await tab.locator(f"#c-list tr[data-id='{queued['id']}'] button").count() == 0
    assert (await admin.get(f"/api/v1/commands/{queued['id']}")).json()["state"] == "cancelled"
    await eventually(  # pushed live too, to every page on the device
        lambda: _pushed(watched, queued["id"]),
        lambda states: "cancelled" in states,
        timeout_s=UI_TIMEOUT_S,
        what="pushed",
    )

    await tab.click("#sign-out")
    await tab.goto(tab.url.split("#")[0] + "#/map")  # so that the device page opens afresh after the sign-in
    await sign_in(tab, database_url, role="viewer")
    await open_device(tab, watched, away)
    listed = await eventually(rows(tab), lambda found: len(found) == 2, timeout_s=UI_TIMEOUT_S, what="the list")
    assert [r["state"] for r in listed] == ["queued", "cancelled"]
    assert not await tab.locator("#c-form").is_visible()
    assert not await tab.locator("#c-list button.c-cancel").is_visible()  # the queued ping's: there, not shown
    assert await tab.locator("#c-list button.c-cancel").count() == 1
    await tab.screenshot(path=screens / "device-commands-viewer.png", full_page=True)
