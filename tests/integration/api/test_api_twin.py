"""The device twin over HTTP and MQTT: merge patches under If-Match, group defaults, retained delivery
(also after the broker was down at PATCH time) and the devices' reports, against real servers."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import aiomqtt
import httpx
import msgspec
import psycopg
import pytest

from api.server import running
from broker.process import start_mosquitto
from config import Settings
from config.broker_url import BrokerUrl
from models.twin import DESIRED_DECODER, DesiredConfig, ReportedConfig
from tests.integration.api.conftest import ADMIN_NAME, add_account, log_in, mint_token

pytestmark = pytest.mark.integration

MERGE_PATCH: Final = {"Content-Type": "application/merge-patch+json"}
TIMEOUT_S: Final = 10.0


def any_version() -> dict[str, str]:
    return {**MERGE_PATCH, "If-Match": "*"}


def at(etag: str) -> dict[str, str]:
    return {**MERGE_PATCH, "If-Match": etag}


async def patch(client: httpx.AsyncClient, path: str, body: object, headers: dict[str, str]) -> httpx.Response:
    return await client.patch(path, content=msgspec.json.encode(body), headers=headers)


async def add_devices(database_url: str, *rows: tuple[str, str | None]) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for device_id, group in rows:
            await conn.execute("INSERT INTO devices (id, group_name) VALUES (%s, %s)", (device_id, group))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_twin_patch_merges_under_if_match_and_get_shows_the_difference(
    http: httpx.AsyncClient, database_url: str
) -> None:
    device = unique("tw")
    await add_devices(database_url, (device, None))
    path = f"/api/v1/devices/{device}/twin"

    empty = await http.get(path)
    first = await patch(http, path, {"report_interval_s": 10, "thresholds": {"fuel": 15}, "x": {"a": 1}}, at('"0"'))
    stale = await patch(http, path, {"report_interval_s": 20}, at('"0"'))
    second = await patch(http, path, {"thresholds": {"engine_temp": 110}, "x": None}, at(first.headers["etag"]))
    shown = await http.get(path)

    assert empty.status_code == 200
    assert empty.headers["etag"] == '"0"'
    assert empty.json()["desired"] == {}
    assert first.status_code == 200, first.text
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    assert "version" in stale.json()["detail"]
    assert second.status_code == 200, second.text
    body = shown.json()
    assert body["desired"] == {"report_interval_s": 10, "thresholds": {"fuel": 15, "engine_temp": 110}}
    assert body["own"] == body["desired"]
    assert shown.headers["etag"] == second.headers["etag"] == f'"{body["version"]}"'
    assert int(first.headers["etag"].strip('"')) < body["version"]
    assert body["difference"] == ["report_interval_s", "thresholds"]
    assert body["reported"] is None
    assert body["in_sync"] is False
    assert body["updated_by"] == ADMIN_NAME
    # No MQTT link in this API: stored, not published.
    assert body["published_version"] == 0


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        ({"report_interval_s": 5}, MERGE_PATCH, 428, "If-Match"),
        ({"report_interval_s": 5}, {"Content-Type": "application/json", "If-Match": "*"}, 415, "merge-patch"),
        ([{"op": "add"}], {**MERGE_PATCH, "If-Match": "*"}, 400, "JSON object"),
        ({"report_interval_s": 0}, {**MERGE_PATCH, "If-Match": "*"}, 400, "report_interval_s"),
        ({"report_interval_s": "often"}, {**MERGE_PATCH, "If-Match": "*"}, 400, "report_interval_s"),
        ({"thresholds": {"fuel": "low"}}, {**MERGE_PATCH, "If-Match": "*"}, 400, "thresholds"),
        ({"firmware_channel": "a" * 40}, {**MERGE_PATCH, "If-Match": "*"}, 400, "firmware_channel"),
    ],
)
async def test_twin_patch_refusals_say_why(
    http: httpx.AsyncClient, database_url: str, body: object, headers: dict[str, str], status: int, reason: str
) -> None:
    device = unique("tw")
    await add_devices(database_url, (device, None))

    response = await patch(http, f"/api/v1/devices/{device}/twin", body, headers)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert reason in response.json()["detail"]
    assert (await http.get(f"/api/v1/devices/{device}/twin")).json()["version"] == 0


async def test_twin_of_an_unknown_device_is_404_and_of_a_disabled_one_cannot_change(
    http: httpx.AsyncClient, database_url: str
) -> None:
    device = unique("tw")
    await add_devices(database_url, (device, None))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("UPDATE devices SET disabled = true WHERE id = %s", (device,))

    unknown_get = await http.get("/api/v1/devices/nobody-here/twin")
    unknown_patch = await patch(http, "/api/v1/devices/nobody-here/twin", {"a": 1}, any_version())
    disabled = await patch(http, f"/api/v1/devices/{device}/twin", {"a": 1}, any_version())

    assert (unknown_get.status_code, unknown_patch.status_code, disabled.status_code) == (404, 404, 409)
    assert "disabled" in disabled.json()["detail"]


async def test_group_defaults_are_inherited_and_a_devices_own_key_overrides_them(
    http: httpx.AsyncClient, database_url: str
) -> None:
    group = unique("depot")
    member, other = unique("tw"), unique("tw")
    await add_devices(database_url, (member, group), (other, None))
    before = await http.get(f"/api/v1/devices/{member}/twin")

    defaults = await patch(
        http,
        f"/api/v1/groups/{group}/twin",
        {"report_interval_s": 60, "firmware_channel": "stable", "thresholds": {"fuel": 10}},
        at('"0"'),
    )
    inherited = await http.get(f"/api/v1/devices/{member}/twin")
    own = await patch(
        http,
        f"/api/v1/devices/{member}/twin",
        {"report_interval_s": 5, "thresholds": {"engine_temp": 105}},
        at(inherited.headers["etag"]),
    )
    regrouped = await patch(http, f"/api/v1/groups/{group}/twin", {"firmware_channel": "beta"}, any_version())
    after_group_change = await http.get(f"/api/v1/devices/{member}/twin")
    outsider = await http.get(f"/api/v1/devices/{other}/twin")
    group_view = await http.get(f"/api/v1/groups/{group}/twin")

    assert defaults.status_code == 200, defaults.text
    assert inherited.json()["desired"] == {
        "report_interval_s": 60,
        "firmware_channel": "stable",
        "thresholds": {"fuel": 10},
    }
    assert inherited.json()["own"] == {}
    assert inherited.headers["etag"] != before.headers["etag"], "the group's change is a new version of the device's"
    assert own.json()["desired"] == {
        "report_interval_s": 5,
        "firmware_channel": "stable",
        "thresholds": {"fuel": 10, "engine_temp": 105},
    }
    assert regrouped.status_code == 200
    assert after_group_change.json()["desired"]["firmware_channel"] == "beta"
    assert after_group_change.json()["version"] > own.json()["version"]
    assert outsider.json()["desired"] == {}
    assert group_view.json()["desired"] == {
        "report_interval_s": 60,
        "firmware_channel": "beta",
        "thresholds": {"fuel": 10},
    }
    assert group_view.headers["etag"] == regrouped.headers["etag"]


async def test_a_device_joining_a_group_gets_a_new_version_with_its_defaults(
    http: httpx.AsyncClient, database_url: str
) -> None:
    group = unique("depot")
    device = unique("tw")
    await add_devices(database_url, (unique("tw"), group), (device, None))
    await patch(http, f"/api/v1/groups/{group}/twin", {"report_interval_s": 30}, any_version())
    before = (await http.get(f"/api/v1/devices/{device}/twin")).json()

    moved = await http.patch(f"/api/v1/devices/{device}", json={"group": group})
    after = (await http.get(f"/api/v1/devices/{device}/twin")).json()

    assert moved.status_code == 200, moved.text
    assert before["desired"] == {}
    assert after["desired"] == {"report_interval_s": 30}
    assert after["version"] > before["version"]


async def test_group_twin_of_an_unknown_group_is_404(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/v1/groups/no-such-group/twin")).status_code == 404
    assert (await patch(http, "/api/v1/groups/no-such-group/twin", {"a": 1}, any_version())).status_code == 404


# --- over MQTT --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def api_with_broker(settings: Settings, mqtt_url: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An API whose MQTT link goes to `mqtt_url`, and an admin's client of it once the link is up."""
    settings = replace(settings, api=replace(settings.api, mqtt_url=mqtt_url))
    await add_account(database_url, ADMIN_NAME, "admin")
    async with running(settings) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        client.headers["Authorization"] = f"Bearer {await log_in(client, ADMIN_NAME)}"
        await until(lambda: client.get("/readyz"), lambda r: bool(r.json()["checks"].get("mqtt", {}).get("ok")))
        yield client


async def until(call: Callable[[], Any], done: Callable[[Any], bool]) -> Any:
    """Call `call` (awaiting it) until `done(result)`; fail after TIMEOUT_S with the last result."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while True:
        result = await call()
        if done(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still not done: {getattr(result, 'text', result)}")
        await asyncio.sleep(0.05)


async def retained_config(mqtt_url: str, device_id: str) -> list[DesiredConfig]:
    """What a device connecting now with clean start receives on its config topic within a second."""
    address = BrokerUrl.parse(mqtt_url)
    received: list[DesiredConfig] = []
    async with aiomqtt.Client(address.host, address.port, identifier=unique("probe")) as client:
        await client.subscribe(f"fleet/v1/{device_id}/config", qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for message in client.messages:
                    assert message.retain
                    assert isinstance(message.payload, bytes)
                    received.append(DESIRED_DECODER.decode(message.payload))
    return received


async def report(mqtt_url: str, device_id: str, version: int, applied: dict[str, Any]) -> None:
    address = BrokerUrl.parse(mqtt_url)
    async with aiomqtt.Client(address.host, address.port, identifier=unique("device")) as client:
        payload = msgspec.json.encode(ReportedConfig(version=version, applied=applied))
        await client.publish(f"fleet/v1/{device_id}/config/reported", payload, qos=1, retain=True)


async def test_a_change_is_published_retained_and_the_devices_report_recorded_once_newest_wins(
    api_settings: Settings, mqtt_url: str, database_url: str
) -> None:
    device = unique("tw")
    await add_devices(database_url, (device, None))
    path = f"/api/v1/devices/{device}/twin"
    async with api_with_broker(api_settings, mqtt_url, database_url) as client:
        changed = (await patch(client, path, {"report_interval_s": 7, "note": "hi"}, any_version())).json()
        received = await retained_config(mqtt_url, device)
        await report(mqtt_url, device, changed["version"], {"report_interval_s": 7})
        reported = await until(lambda: client.get(path), lambda r: r.json()["reported_version"] is not None)
        await report(mqtt_url, device, changed["version"] - 1, {"report_interval_s": 1})
        await asyncio.sleep(0.5)
        after_older = (await client.get(path)).json()

    assert changed["published_version"] == changed["version"]
    assert received == [DesiredConfig(version=changed["version"], desired={"report_interval_s": 7, "note": "hi"})]
    assert reported.json()["reported_version"] == changed["version"]
    assert reported.json()["reported"] == {"report_interval_s": 7}
    assert reported.json()["difference"] == ["note"]
    assert reported.json()["in_sync"] is True
    assert after_older["reported"] == {"report_interval_s": 7}, "an older report replaced a newer one"


async def test_a_change_made_while_the_broker_is_down_reaches_it_when_it_returns(
    api_settings: Settings, servers_dir: Path, database_url: str
) -> None:
    device = unique("tw")
    await add_devices(database_url, (device, None))
    path = f"/api/v1/devices/{device}/twin"
    with start_mosquitto(servers_dir / unique("mosquitto-twin")) as broker:
        async with api_with_broker(api_settings, broker.url, database_url) as client:
            broker.kill()
            await until(lambda: client.get("/readyz"), lambda r: not r.json()["checks"]["mqtt"]["ok"])
            during = await patch(client, path, {"report_interval_s": 9}, any_version())
            broker.restart()
            published = await until(
                lambda: client.get(path), lambda r: r.json()["published_version"] == r.json()["version"]
            )
            received = await retained_config(broker.url, device)

    assert during.status_code == 200, during.text
    assert during.json()["published_version"] < during.json()["version"]
    assert received == [DesiredConfig(version=during.json()["version"], desired={"report_interval_s": 9})]
    assert published.json()["version"] == during.json()["version"]


async def test_viewers_and_api_keys_read_twins_but_never_change_them(
    api_settings: Settings, http: httpx.AsyncClient, database_url: str
) -> None:
    device = unique("tw")
    await add_devices(database_url, (device, None))
    viewer = {"Authorization": f"Bearer {mint_token(api_settings, 'v', 'viewer')}"}

    read = await http.get(f"/api/v1/devices/{device}/twin", headers=viewer)
    refused = await http.patch(
        f"/api/v1/devices/{device}/twin", content=b'{"a": 1}', headers={**viewer, **any_version()}
    )

    assert read.status_code == 200
    assert refused.status_code == 403
