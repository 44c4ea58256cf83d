"""One contract for every `StateCache`: newer device time wins field by field, ties go to (boot, seq);
presence follows the device's status and, while it says nothing else, its telemetry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import msgspec

from bridge.cache import StateCache, presence_field
from bridge.decode import PresenceUpdate
from models.state import decode_field, state_from_fields

T = 1_700_000_000_000
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def field(ts: int, seq: int, value: float) -> tuple[tuple[int, int, int], bytes]:
    return (ts, 0, seq), b"%d:0:%d:%s" % (ts, seq, msgspec.json.encode(value))


def status(device: str, state: str, at: datetime, *, retained: bool = False) -> tuple[tuple[int, int, int], bytes]:
    order = 1 if retained else int(at.timestamp() * 1000)
    update = PresenceUpdate(device, "online" if state == "online" else "offline", "status", at, order)
    return (order, 0, 0), update.field()


async def check_state_cache_contract(cache: StateCache) -> None:
    """Run the merge contract against `cache`, which must start empty."""
    changed = await cache.merge({"d1": {"m.fuel": field(T, 5, 50.0)}}, seen=(), now=NOW)
    assert list(changed) == ["d1"]
    assert changed["d1"] == {"m.fuel": field(T, 5, 50.0)[1]}
    # A late sample (older device time) never regresses a field...
    assert await cache.merge({"d1": {"m.fuel": field(T - 1000, 9, 10.0)}}, seen=(), now=NOW) == {}
    # ...but it may set a field that the newer sample did not carry; the whole state comes back.
    changed = await cache.merge({"d1": {"m.level": field(T - 1000, 9, 70.0)}}, seen=(), now=NOW)
    assert set(changed["d1"]) == {"m.fuel", "m.level"}
    # Same device time: the higher sequence wins, and a replay of the same value changes nothing.
    assert list(await cache.merge({"d1": {"m.fuel": field(T, 6, 49.0)}}, seen=(), now=NOW)) == ["d1"]
    assert await cache.merge({"d1": {"m.fuel": field(T, 6, 49.0)}}, seen=(), now=NOW) == {}
    # Several devices in one call.
    two = await cache.merge({"d2": {"m.fuel": field(T, 1, 1.0)}, "d3": {"m.fuel": field(T, 1, 2.0)}}, seen=(), now=NOW)
    assert sorted(two) == ["d2", "d3"]
    assert await cache.fields("d1") == {"m.fuel": field(T, 6, 49.0)[1], "m.level": field(T - 1000, 9, 70.0)[1]}
    assert await cache.fields("nobody") == {}

    # Telemetry from a device with no presence yet: online, by heartbeat.
    changed = await cache.merge({"d4": {"m.fuel": field(T, 1, 5.0)}}, seen={"d4"}, now=NOW)
    presence = state_from_fields("d4", changed["d4"]).presence
    assert presence is not None
    assert (presence.state, presence.source, presence.since) == ("online", "heartbeat", NOW)
    # Its Last Will: offline, by status; telemetry still in the pipeline does not undo that.
    later = NOW + timedelta(seconds=1)
    await cache.merge({"d4": {"presence": status("d4", "offline", later)}}, seen=(), now=later)
    await cache.merge({"d4": {"m.fuel": field(T + 1, 2, 5.0)}}, seen={"d4"}, now=later + timedelta(seconds=1))
    presence = state_from_fields("d4", await cache.fields("d4")).presence
    assert presence is not None
    assert (presence.state, presence.source) == ("offline", "status")
    # A retained status replayed on subscribe only fills a gap; it never overrides what is known.
    await cache.merge({"d5": {"presence": status("d5", "online", later)}}, seen=(), now=later)
    assert (
        await cache.merge({"d5": {"presence": status("d5", "offline", NOW, retained=True)}}, seen=(), now=later) == {}
    )
    filled = await cache.merge({"d6": {"presence": status("d6", "offline", NOW, retained=True)}}, seen=(), now=later)
    assert decode_field(filled["d6"]["presence"]).value["state"] == "offline"

    # Silence is decided by PostgreSQL (`bridge.sink`): its `offline` by heartbeat arrives as a presence
    # field and replaces the heartbeat's `online`; the device's next telemetry brings it back.
    await cache.merge({"d7": {"m.fuel": field(T, 1, 5.0)}}, seen={"d7"}, now=NOW)
    silent = NOW + timedelta(seconds=91)
    offline = PresenceUpdate("d7", "offline", "heartbeat", silent, int(silent.timestamp() * 1000))
    swept = await cache.merge({"d7": {"presence": ((offline.order_ms, 0, 0), offline.field())}}, seen=(), now=silent)
    presence = state_from_fields("d7", swept["d7"]).presence
    assert presence is not None
    assert (presence.state, presence.source) == ("offline", "heartbeat")
    back = await cache.merge({"d7": {"m.fuel": field(T + 5, 2, 5.0)}}, seen={"d7"}, now=NOW + timedelta(seconds=95))
    presence = state_from_fields("d7", back["d7"]).presence
    assert presence is not None
    assert (presence.state, presence.source) == ("online", "heartbeat")


Announced = list[tuple[str, str, dict[str, bytes]]]


async def check_live_announcements(cache: StateCache, announced: Callable[[], Awaitable[Announced]]) -> None:
    """What a merge appends to the live stream: `announced` returns (device, kind, fields) in stream order.

    `cache` must start empty. A late value is announced as a correction without regressing the state; a
    redelivered value is not announced at all; presence travels in an entry of its own.
    """
    await cache.merge({"c1": {"m.fuel": field(T, 5, 50.0)}}, seen={"c1"}, now=NOW)
    late = {
        "m.fuel": field(T - 1000, 4, 55.0),
        "m.level": field(T - 1000, 4, 80.0),
        "m.odometer": field(T - 500, 4, 1.0),
    }
    changed = await cache.merge({"c1": late}, seen=(), now=NOW)
    await cache.merge({"c1": {"m.fuel": field(T, 5, 50.0)}}, seen=(), now=NOW)  # redelivered: no entry

    assert set(changed) == {"c1"}  # the level and odometer were new to the state
    assert await announced() == [
        ("c1", "state", {"m.fuel": field(T, 5, 50.0)[1]}),
        ("c1", "presence", {"presence": presence_field("online", NOW)}),
        ("c1", "state", {"m.level": late["m.level"][1], "m.odometer": late["m.odometer"][1]}),
        ("c1", "correction", {"m.fuel": late["m.fuel"][1]}),
    ]
    assert decode_field((await cache.fields("c1"))["m.fuel"]).value == 50.0
