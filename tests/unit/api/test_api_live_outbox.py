"""The per-connection outbox: bounded, conflating per device, control messages first and never lost."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from api.live.outbox import Outbox
from api.live.update import LiveUpdate
from models.state import DeviceState, FieldValue, PositionState

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def fuel(device_id: str, value: float, seq: int, cursor: str) -> LiveUpdate:
    ts = T0 + timedelta(seconds=seq)
    return LiveUpdate(device_id, DeviceState(device_id, ts, metrics={"fuel": FieldValue(value, ts, seq)}), cursor)


def position(device_id: str, lat: float, seq: int, cursor: str) -> LiveUpdate:
    ts = T0 + timedelta(seconds=seq)
    return LiveUpdate(device_id, DeviceState(device_id, ts, position=PositionState(lat, 13.4, ts, seq)), cursor)


async def test_outbox_keeps_only_the_newest_update_per_device_for_a_slow_client() -> None:
    outbox = Outbox(max_pending_devices=10)

    # The client reads nothing while 3 devices send 10,000 updates between them.
    for n in range(10_000):
        outbox.offer(fuel(f"truck-{n % 3}", float(n % 100), n, f"{n}-0"))
    batch = await outbox.take()

    assert len(batch.updates) == 3
    newest = {update.device_id: update for update, _ in batch.updates}
    assert newest["truck-0"].cursor == "9999-0"
    assert newest["truck-0"].changes.metrics["fuel"].seq == 9999
    assert newest["truck-1"].cursor == "9997-0"
    assert outbox.conflated == 10_000 - 3
    assert not batch.overflowed


async def test_outbox_merges_different_changed_fields_of_one_device() -> None:
    outbox = Outbox()

    outbox.offer(fuel("truck-1", 40.0, 1, "1-0"))
    outbox.offer(position("truck-1", 52.5, 2, "2-0"))
    outbox.offer(fuel("truck-1", 39.5, 3, "3-0"))
    ((update, _),) = (await outbox.take()).updates

    assert update.cursor == "3-0"
    assert update.changes.metrics["fuel"].value == 39.5
    assert update.changes.position is not None
    assert update.changes.position.lat == 52.5
    assert update.changes.ts == T0 + timedelta(seconds=3)


async def test_outbox_marks_overflow_instead_of_growing_past_its_bound() -> None:
    outbox = Outbox(max_pending_devices=2)

    for n in range(5):
        outbox.offer(fuel(f"truck-{n}", 1.0, n, f"{n}-0"))
    batch = await outbox.take()

    assert batch.overflowed
    assert [update.device_id for update, _ in batch.updates] == ["truck-0", "truck-1"]


async def test_outbox_hands_over_control_messages_first_and_reports_them_sent() -> None:
    outbox = Outbox()
    outbox.offer(fuel("truck-1", 1.0, 1, "1-0"))
    outbox.push(b"snapshot")
    outbox.push(b"subscribed")
    waiter = asyncio.create_task(outbox.control_sent())
    await asyncio.sleep(0)

    batch = await outbox.take()
    assert not waiter.done()
    outbox.sent()
    await asyncio.wait_for(waiter, 1)

    assert batch.control == [b"snapshot", b"subscribed"]
    assert len(batch.updates) == 1


async def test_outbox_take_waits_until_something_is_offered() -> None:
    outbox = Outbox()
    taker = asyncio.create_task(outbox.take())
    await asyncio.sleep(0)
    assert not taker.done()

    outbox.offer(fuel("truck-1", 1.0, 1, "1-0"))
    batch = await asyncio.wait_for(taker, 1)

    assert len(batch.updates) == 1


async def test_outbox_forget_drops_pending_updates_of_unsubscribed_devices() -> None:
    outbox = Outbox()
    outbox.offer(fuel("truck-1", 1.0, 1, "1-0"))
    outbox.offer(fuel("truck-2", 2.0, 2, "2-0"))

    outbox.forget(["truck-1"])
    batch = await outbox.take()

    assert [update.device_id for update, _ in batch.updates] == ["truck-2"]


def test_live_update_message_is_encoded_once_and_shared() -> None:
    update = fuel("truck-1", 12.5, 7, "7-0")

    assert update.message() is update.message()
    assert update.message().startswith('{"type":"state","device_id":"truck-1","changes":')
    assert update.message().endswith('"cursor":"7-0"}')


@pytest.mark.parametrize("cap", [1, 3])
def test_outbox_counts_only_distinct_devices_against_its_bound(cap: int) -> None:
    outbox = Outbox(max_pending_devices=cap)

    for n in range(100):
        outbox.offer(fuel("truck-1", 1.0, n, f"{n}-0"))

    assert not outbox.overflowed


async def test_outbox_cursors_are_entry_ids_in_stream_order_when_nothing_was_conflated() -> None:
    outbox = Outbox()
    outbox.offer(fuel("truck-2", 1.0, 1, "5-0"))
    outbox.offer(fuel("truck-1", 1.0, 2, "6-0"))
    outbox.offer(fuel("truck-3", 1.0, 3, "9-2"))

    batch = await outbox.take()

    assert [(update.device_id, cursor) for update, cursor in batch.updates] == [
        ("truck-2", "5-0"),
        ("truck-1", "6-0"),
        ("truck-3", "9-2"),
    ]


async def test_outbox_holds_back_a_conflated_cursor_so_a_resume_misses_nothing() -> None:
    outbox = Outbox()
    outbox.offer(fuel("truck-1", 1.0, 1, "3-0"))
    outbox.offer(fuel("truck-2", 2.0, 2, "7-0"))
    outbox.offer(fuel("truck-1", 3.0, 3, "10-0"))  # folded into truck-1's pending update from 3-0

    batch = await outbox.take()

    # truck-1 goes first (its oldest entry is oldest) but carries the entry 10-0; had the client resumed
    # from 10-0 after it, it would never see truck-2's 7-0. Its cursor stops just before 7-0.
    assert [(update.device_id, cursor) for update, cursor in batch.updates] == [
        ("truck-1", "6-18446744073709551615"),
        ("truck-2", "10-0"),
    ]


async def test_outbox_keeps_updates_while_held_and_sends_control_meanwhile() -> None:
    outbox = Outbox()
    outbox.hold()
    outbox.offer(fuel("truck-1", 1.0, 1, "8-0"))
    outbox.push(b"replayed")

    held = await outbox.take()
    outbox.release()
    released = await outbox.take()

    assert (held.control, held.updates) == ([b"replayed"], [])
    assert [cursor for _, cursor in released.updates] == ["8-0"]
