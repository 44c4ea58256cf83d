"""Each API instance advances running rollouts every interval (`api.rollouts.services.advance_rollouts`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import psycopg

from api.firmware.links import FirmwareBackend
from api.pool import Pool
from api.rollouts.services import advance_rollouts

log = logging.getLogger(__name__)

RETRY_MAX_S: Final = 5.0


async def advance_forever(pool: Pool, backend: FirmwareBackend, *, interval_s: float) -> None:
    """Advance rollouts until cancelled; a failing database is retried with backoff."""
    delay = interval_s
    while True:
        try:
            changed = await advance_rollouts(pool, backend)
            if changed:
                log.info("rollouts advanced: %s", changed)
            delay = interval_s
        except (psycopg.Error, OSError) as exc:
            log.warning("rollouts not advanced (%s); retrying in %.1f s", exc, delay)
            delay = min(RETRY_MAX_S, delay * 2)
        except Exception:
            # A bug must not end the loop for every rollout: logged, and tried again after the backoff.
            log.exception("advancing rollouts failed")
            delay = min(RETRY_MAX_S, delay * 2)
        await asyncio.sleep(delay)
