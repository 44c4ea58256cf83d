"""The batcher: due by count or by age, with the clock passed in."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bridge.batch import Batcher
from bridge.decode import Decoded

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def item() -> Decoded:
    return Decoded("t1", "fleet/v1/t1/telemetry", b"{}", NOW)


async def test_batch_is_due_when_full() -> None:
    loop = asyncio.get_running_loop()
    batcher = Batcher(max_messages=2, max_age_s=10)
    assert batcher.due_in(0.0) is None
    assert not batcher.add(item(), loop.create_future(), now=100.0)
    assert batcher.due_in(100.0) == 10.0
    assert batcher.add(item(), loop.create_future(), now=101.0)
    assert batcher.due_in(101.0) == 0.0


async def test_batch_is_due_when_its_first_message_is_old_enough() -> None:
    loop = asyncio.get_running_loop()
    batcher = Batcher(max_messages=100, max_age_s=0.2)
    batcher.add(item(), loop.create_future(), now=5.0)
    batcher.add(item(), loop.create_future(), now=5.15)
    assert abs((batcher.due_in(5.1) or 0) - 0.1) < 1e-9
    assert batcher.due_in(5.3) == 0.0


async def test_take_hands_over_the_batch_and_starts_afresh() -> None:
    loop = asyncio.get_running_loop()
    batcher = Batcher(max_messages=10, max_age_s=1)
    for _ in range(3):
        batcher.add(item(), loop.create_future(), now=0.0)
    batch = batcher.take()
    assert len(batch) == 3
    assert batcher.pending() == 0
    assert batcher.due_in(0.0) is None
