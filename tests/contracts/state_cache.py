"""One contract for every `StateCache`: newer device time wins field by field; ties go to (boot, seq)."""

from __future__ import annotations

from bridge.cache import StateCache


async def check_state_cache_contract(cache: StateCache) -> None:
    """Run the merge contract against `cache`, which must start empty."""
    t = 1_700_000_000_000
    assert await cache.merge({"d1": {"m.fuel": ((t, 0, 5), b"%d:0:5:50.0" % t)}}) == 1
    # A late sample (older device time) never regresses a field...
    assert await cache.merge({"d1": {"m.fuel": ((t - 1000, 0, 9), b"%d:0:9:10.0" % (t - 1000))}}) == 0
    # ...but it may set a field that the newer sample did not carry.
    assert await cache.merge({"d1": {"m.level": ((t - 1000, 0, 9), b"%d:0:9:70.0" % (t - 1000))}}) == 1
    # Same device time: the higher sequence wins, and a replay of the same value changes nothing.
    assert await cache.merge({"d1": {"m.fuel": ((t, 0, 6), b"%d:0:6:49.0" % t)}}) == 1
    assert await cache.merge({"d1": {"m.fuel": ((t, 0, 6), b"%d:0:6:49.0" % t)}}) == 0
    # Several devices in one call.
    assert (
        await cache.merge(
            {"d2": {"m.fuel": ((t, 0, 1), b"%d:0:1:1.0" % t)}, "d3": {"m.fuel": ((t, 0, 1), b"%d:0:1:2.0" % t)}}
        )
        == 2
    )
    fields = await cache.fields("d1")
    assert fields == {"m.fuel": b"%d:0:6:49.0" % t, "m.level": b"%d:0:9:70.0" % (t - 1000)}
    assert await cache.fields("nobody") == {}
