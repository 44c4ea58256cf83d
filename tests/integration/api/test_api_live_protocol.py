"""The live protocol against real Redis and PostgreSQL: groups, boxes, kinds, heartbeats, abuse, resume."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from api.server import running
from config import Settings
from models.state import GEO_KEY, LIVE_STREAM_KEY, encode_field, state_key
from tests.integration.api.live_client import (
    TS_MS,
    live_client,
    publish,
    publish_fuel,
    publish_position,
    receive,
    request,
    updates_until,
)

pytestmark = pytest.mark.integration

BERLIN = (13.40, 52.52)
PARIS = (2.35, 48.86)
AROUND_BERLIN = [13.0, 52.0, 14.0, 53.0]


async def add_devices(database_url: str, groups: dict[str, str]) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for device_id, group in groups.items():
            await conn.execute("INSERT INTO devices (id, group_name) VALUES (%s, %s)", (device_id, group))


async def place(redis_client: aioredis.Redis, device_id: str, lon: float, lat: float) -> None:
    """A device whose state and GEO index hold this position (as the bridge leaves them)."""
    value = json.dumps({"lat": lat, "lon": lon}).encode()
    await redis_client.hset(state_key(device_id), mapping={"pos": encode_field(TS_MS, 0, 1, value)})
    await redis_client.geoadd(GEO_KEY, (lon, lat, device_id))


async def drain_until_closed(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every message the server sends until it closes the connection."""
    messages: list[dict[str, Any]] = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            messages.append(await receive(ws))
    return messages


def updates(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages that carry a stream entry, in the order received (acknowledgements left out)."""
    return [message for message in messages if message["type"] in {"state", "presence", "correction"}]


async def through(ws: ClientConnection, received: list[dict[str, Any]], last: str) -> list[dict[str, Any]]:
    """`received`, then what follows up to the message carrying `last`, unless that one was received."""
    if any(message.get("cursor") == last for message in received):
        return received
    return received + await updates_until(ws, last)


def with_heartbeat(settings: Settings, seconds: float) -> Settings:
    return dataclasses.replace(settings, api=dataclasses.replace(settings.api, live_heartbeat_s=seconds))


async def test_live_group_subscription_serves_the_groups_devices_as_the_registry_says(
    api_url: str, admin_token: str, redis_client: aioredis.Redis, database_url: str
) -> None:
    await add_devices(database_url, {"truck-n1": "north", "truck-n2": "north", "truck-s1": "south"})
    for device_id in ("truck-n1", "truck-s1"):
        await redis_client.hset(state_key(device_id), mapping={"m.fuel": encode_field(TS_MS, 0, 1, b"50.0")})

    async with live_client(api_url, admin_token) as ws:
        replies = await request(ws, group="north")
        await publish_fuel(redis_client, "truck-s1", 2, 1.0)
        north = await publish_fuel(redis_client, "truck-n2", 2, 2.0)
        update = await receive(ws)
        gone = await request(ws, "unsubscribe", group="north")
        await publish_fuel(redis_client, "truck-n1", 3, 3.0)
        other = await request(ws, devices=["truck-s1"])

    assert [(reply["type"], reply.get("device_id")) for reply in replies] == [
        ("snapshot", "truck-n1"),
        ("snapshot", "truck-n2"),
        ("subscribed", None),
    ]
    assert replies[1]["state"] is None
    assert replies[-1] == {"type": "subscribed", "group": "north"}
    assert (update["device_id"], update["cursor"]) == ("truck-n2", north)
    assert gone == [{"type": "unsubscribed", "group": "north"}]
    assert [reply["type"] for reply in other] == ["snapshot", "subscribed"]  # no north update in between


async def test_live_box_subscription_follows_devices_in_and_out(
    api_url: str, admin_token: str, redis_client: aioredis.Redis
) -> None:
    await place(redis_client, "truck-in", *BERLIN)
    await place(redis_client, "truck-away", *PARIS)

    async with live_client(api_url, admin_token) as ws:
        replies = await request(ws, bbox=AROUND_BERLIN)
        await publish_fuel(redis_client, "truck-away", 2, 1.0)  # outside: not sent
        inside = await publish_fuel(redis_client, "truck-in", 2, 2.0)
        arrives = await publish_position(redis_client, "truck-away", 3, 13.5, 52.4)
        leaves = await publish_position(redis_client, "truck-in", 3, *PARIS)
        await publish_fuel(redis_client, "truck-in", 4, 3.0)  # outside now: not sent
        last = await publish_fuel(redis_client, "truck-away", 4, 4.0)
        seen = await updates_until(ws, last)

    assert [(reply["type"], reply.get("device_id")) for reply in replies] == [
        ("snapshot", "truck-in"),
        ("subscribed", None),
    ]
    assert replies[-1] == {"type": "subscribed", "bbox": AROUND_BERLIN}
    assert [(message["device_id"], message["cursor"]) for message in seen] == [
        ("truck-in", inside),
        ("truck-away", arrives),
        ("truck-in", leaves),
        ("truck-away", last),
    ]


async def test_live_sends_presence_and_corrections_as_messages_of_their_own(
    api_url: str, admin_token: str, redis_client: aioredis.Redis
) -> None:
    offline = encode_field(TS_MS, 0, 0, b'{"state":"offline","source":"heartbeat","since":"2025-11-24T16:00:00Z"}')

    async with live_client(api_url, admin_token) as ws:
        await request(ws, devices=["truck-1"])
        presence = await publish(redis_client, "truck-1", {"presence": offline}, kind="presence")
        late = await publish(
            redis_client, "truck-1", {"m.fuel": encode_field(TS_MS - 60_000, 0, 3, b"61.5")}, "correction"
        )
        seen = await updates_until(ws, late)

    assert seen == [
        {
            "type": "presence",
            "device_id": "truck-1",
            "presence": {"state": "offline", "source": "heartbeat", "since": "2025-11-24T16:00:00Z"},
            "cursor": presence,
        },
        {
            "type": "correction",
            "device_id": "truck-1",
            "values": {
                "device_id": "truck-1",
                "ts": "2025-11-24T15:59:00Z",
                "position": None,
                "metrics": {"fuel": {"value": 61.5, "ts": "2025-11-24T15:59:00Z", "seq": 3, "boot": 0}},
                "aggregates": {},
                "quality": None,
                "presence": None,
            },
            "cursor": late,
        },
    ]


async def test_live_heartbeat_gives_an_idle_client_a_recent_resume_point(
    api_settings: Settings, admin_token: str, redis_client: aioredis.Redis
) -> None:
    async with running(with_heartbeat(api_settings, 0.2)) as url, live_client(url, admin_token) as ws:
        await request(ws, devices=["truck-1"])
        elsewhere = await publish_fuel(redis_client, "truck-2", 1, 1.0)
        heartbeat = await receive(ws)
        while heartbeat["cursor"] != elsewhere:  # an earlier heartbeat may predate the entry
            heartbeat = await receive(ws)

    assert heartbeat == {"type": "heartbeat", "cursor": elsewhere}


async def test_live_answers_each_bad_message_but_closes_on_a_stream_of_them(api_url: str, admin_token: str) -> None:
    async with live_client(api_url, admin_token) as ws:
        both = await request(ws, devices=["truck-1"], group="north")
        inverted = await request(ws, bbox=[14.0, 52.0, 13.0, 53.0])
        for _ in range(25):
            await ws.send("{not json")
        replies = await drain_until_closed(ws)

    assert both == [{"type": "error", "message": "name exactly one of devices, group or bbox"}]
    assert "antimeridian" in inverted[-1]["message"]
    assert [reply["type"] for reply in replies] == ["error"] * 18  # 20 in a row, two of them above
    assert ws.close_code == 1008


async def test_live_resume_replays_what_was_missed_then_continues_live(
    api_url: str, admin_token: str, redis_client: aioredis.Redis
) -> None:
    async with live_client(api_url, admin_token) as ws:
        await request(ws, devices=["truck-1"])
        first = await publish_fuel(redis_client, "truck-1", 1, 1.0)
        assert (await receive(ws))["cursor"] == first
    missed = [
        await publish_fuel(redis_client, "truck-1", 2, 2.0),
        await publish_fuel(redis_client, "truck-2", 2, 9.0),  # not subscribed
        await publish_fuel(redis_client, "truck-1", 3, 3.0),
    ]

    async with live_client(api_url, admin_token, since=first) as ws:
        replayed = await request(ws, devices=["truck-1"])
        live = await publish_fuel(redis_client, "truck-1", 4, 4.0)
        seen = updates(await through(ws, replayed, live))

    # Replayed (or, had this instance's reader not read them yet, delivered live): each once, in order.
    assert [(message["type"], message["cursor"]) for message in seen] == [
        ("state", missed[0]),
        ("state", missed[2]),
        ("state", live),
    ]
    assert [message["changes"]["metrics"]["fuel"]["value"] for message in seen] == [2.0, 3.0, 4.0]
    assert "snapshot" not in {message["type"] for message in replayed}


async def test_live_resume_message_with_overlapping_subscriptions_sends_each_entry_once(
    api_url: str, admin_token: str, redis_client: aioredis.Redis, database_url: str
) -> None:
    await add_devices(database_url, {"truck-n1": "north", "truck-n2": "north"})
    since = await publish_fuel(redis_client, "truck-x", 1, 0.0)
    one = await publish_fuel(redis_client, "truck-n1", 1, 1.0)
    two = await publish_fuel(redis_client, "truck-n2", 1, 2.0)

    async with live_client(api_url, admin_token) as ws:
        await ws.send(json.dumps({"action": "resume", "cursor": since}))
        by_name = await request(ws, devices=["truck-n1"])
        by_group = await request(ws, group="north")  # truck-n1 again: already replayed
        seen = updates(await through(ws, by_name + by_group, two))

    assert [message["cursor"] for message in seen] == [one, two]


async def test_live_resume_from_a_cursor_the_stream_no_longer_covers_says_reset_and_sends_snapshots(
    api_url: str, admin_token: str, redis_client: aioredis.Redis
) -> None:
    await redis_client.hset(state_key("truck-1"), mapping={"m.fuel": encode_field(TS_MS, 0, 9, b"7.0")})
    old = await publish_fuel(redis_client, "truck-1", 1, 1.0)
    await publish_fuel(redis_client, "truck-1", 2, 2.0)
    await redis_client.xtrim(LIVE_STREAM_KEY, maxlen=0)  # the history after `old` is gone
    kept = await publish_fuel(redis_client, "truck-1", 3, 3.0)

    async with live_client(api_url, admin_token, since=old) as ws:
        replies = await request(ws, devices=["truck-1"])
    async with live_client(api_url, admin_token, since="99999999999999-0") as ws:
        ahead = await request(ws, devices=["truck-1"])
        after_reset = await publish_fuel(redis_client, "truck-1", 4, 4.0)
        live_again = await receive(ws)  # a reset connection is an ordinary live one
    async with live_client(api_url, admin_token, since="yesterday") as ws:
        garbled = [await receive(ws), *await request(ws, devices=["truck-1"])]

    assert replies[0] == {
        "type": "reset",
        "reason": "cursor is older than the history the live stream keeps",
        "oldest": kept,
    }
    assert [(reply["type"], reply.get("device_id")) for reply in replies[1:]] == [
        ("snapshot", "truck-1"),
        ("subscribed", None),
    ]
    assert ahead[0]["type"] == "reset"
    assert "ahead" in ahead[0]["reason"]
    assert live_again["cursor"] == after_reset
    assert garbled[0] == {"type": "error", "message": "since is not a stream entry id"}
    assert [reply["type"] for reply in garbled[1:]] == ["snapshot", "subscribed"]


async def test_live_two_instances_deliver_every_update_once_with_filters_and_resume(
    api_settings: Settings, admin_token: str, redis_client: aioredis.Redis, database_url: str
) -> None:
    await add_devices(database_url, {"truck-n1": "north", "truck-s1": "south"})
    await place(redis_client, "truck-s1", *BERLIN)
    async with (
        running(api_settings) as first_url,
        running(api_settings) as second_url,
        live_client(first_url, admin_token) as by_group,
        live_client(second_url, admin_token) as by_box,
    ):
        await request(by_group, group="north")
        await request(by_box, bbox=AROUND_BERLIN)
        entries = [
            await publish_fuel(redis_client, "truck-n1", 1, 1.0),
            await publish_fuel(redis_client, "truck-s1", 1, 2.0),
            await publish_fuel(redis_client, "truck-n1", 2, 3.0),
            await publish_position(redis_client, "truck-n1", 3, 13.6, 52.6),  # into the box
            await publish_fuel(redis_client, "truck-s1", 2, 4.0),
        ]
        await redis_client.geoadd(GEO_KEY, (13.6, 52.6, "truck-n1"))  # as the bridge's merge does
        north = await updates_until(by_group, entries[3])
        box = await updates_until(by_box, entries[4])
        # The box client reconnects to the other instance and resumes from its last cursor but one.
        resume_from = box[-2]["cursor"]
        await by_box.close()
        missed = await publish_fuel(redis_client, "truck-n1", 4, 5.0)
        async with live_client(first_url, admin_token, since=resume_from) as resumed:
            replay = await request(resumed, bbox=AROUND_BERLIN)
            newest = await publish_fuel(redis_client, "truck-s1", 3, 6.0)
            continued = updates(await through(resumed, replay, newest))
        heard = await receive(by_group)

    assert [message["cursor"] for message in north] == [entries[0], entries[2], entries[3]]
    assert [message["cursor"] for message in box] == [entries[1], entries[3], entries[4]]
    assert [message["cursor"] for message in continued] == [entries[4], missed, newest]
    assert heard["cursor"] == missed
