"""The engine's feed, written in each batch's transaction: one row per device and batch (models/feed.py)."""

from __future__ import annotations

from typing import Any

import psycopg

from models.feed import FEED_FROM_STAGE


async def write_feed(cur: psycopg.AsyncCursor[Any]) -> None:
    """List the batch's devices and device-time ranges for the engine; call after the staging COPY, before COMMIT."""
    await cur.execute(FEED_FROM_STAGE)
