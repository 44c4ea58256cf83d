"""The device twin over HTTP and MQTT: merge patches under If-Match, group defaults, retained delivery
(also after the broker was down at PATCH time) and the devices' reports, against real servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import psycopg
import pytest

from broker.process import start_mosquitto
from config import Settings
from models.twin import DesiredConfig
from tests.integration.api.conftest import ADMIN_NAME, mint_token
from tests.integration.api.twin_client import (
    MERGE_PATCH,
    add_devices,
    any_version,
    api_with_broker,
    at,
    patch,
    report,
    retained_config,
    unique,
    until,
)

pytestmark = pytest.mark.integration


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


async def test_a_groups_defaults_reach_every_member_retained_with_its_own_keys_over_them(
    api_settings: Settings, mqtt_url: str, database_url: str
) -> None:
    group = unique("depot")
    members = sorted(unique("tw") for _ in range(3))
    await add_devices(database_url, *((member, group) for member in members))
    async with api_with_broker(api_settings, mqtt_url, database_url) as client:
        await patch(client, f"/api/v1/devices/{members[0]}/twin", {"report_interval_s": 5}, any_version())
        await patch(client, f"/api/v1/groups/{group}/twin", {"report_interval_s": 60, "zone": "b"}, any_version())
        twins = [
            await until(
                lambda member=member: client.get(f"/api/v1/devices/{member}/twin"),
                lambda r: (
                    r.json()["desired"].get("zone") == "b" and r.json()["published_version"] == r.json()["version"]
                ),
            )
            for member in members
        ]
        received = [await retained_config(mqtt_url, member) for member in members]

    assert [[config.desired for config in configs] for configs in received] == [
        [{"report_interval_s": 5, "zone": "b"}],
        [{"report_interval_s": 60, "zone": "b"}],
        [{"report_interval_s": 60, "zone": "b"}],
    ]
    assert [configs[0].version for configs in received] == [twin.json()["version"] for twin in twins]


async def test_two_instances_changing_one_device_at_once_leave_the_broker_retaining_the_last_version(
    api_settings: Settings, mqtt_url: str, database_url: str
) -> None:
    device = unique("tw")
    await add_devices(database_url, (device, None))
    path = f"/api/v1/devices/{device}/twin"
    async with (
        api_with_broker(api_settings, mqtt_url, database_url) as first,
        api_with_broker(api_settings, mqtt_url, database_url) as second,
    ):
        answers = await asyncio.gather(
            *(
                patch(client, path, {"report_interval_s": n + 1}, any_version())
                for n, client in enumerate([first, second] * 10)
            )
        )
        final = (await first.get(path)).json()
        received = await retained_config(mqtt_url, device)

    assert [answer.status_code for answer in answers] == [200] * 20
    assert final["published_version"] == final["version"]
    assert received == [DesiredConfig(version=final["version"], desired=final["desired"])]
