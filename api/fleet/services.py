"""Fleet state: which devices (registry, GEO index), then their state (Redis), in three round trips at most.

Candidates come from the registry, filtered and keyset-paginated by id in one statement, so group, kind,
a group-limited caller and the cursor work exactly as in the device listing; a `bbox` first asks Redis's
GEO index (`fleet:geo`, kept by the bridge) which devices are inside, and the registry query keeps only
those. The states of the page's devices are then read in one pipeline (`read_states`), never one round
trip per device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

from api.devices.services import read_states, where_clause
from api.fleet.bbox import BoundingBox, covering_search
from api.fleet.schemas import FleetStatePage
from api.pool import Pool
from models.state import GEO_KEY

FLEET_PAGE_MAX: Final = 5000
FLEET_PAGE_DEFAULT: Final = 1000
FLEET_IDS_MAX: Final = 1000

_FILTERS: Final = {
    "after": "id > %(after)s",
    "visible_group": "group_name = %(visible_group)s",
    "group": "group_name = %(group)s",
    "kind": "kind = %(kind)s",
    "ids": "id = ANY(%(ids)s)",
    "in_box": "id = ANY(%(in_box)s)",
}


@dataclass(frozen=True, slots=True)
class FleetFilter:
    """Which devices' state to serve; None: no condition."""

    group: str | None = None
    kind: str | None = None
    ids: Sequence[str] | None = None
    bbox: BoundingBox | None = None


async def devices_in_box(redis: Redis, box: BoundingBox) -> list[str]:
    """Ids of the devices whose last position in the GEO index lies inside `box`."""
    search = covering_search(box)
    if search is None:
        return []
    found: list[Any] = await redis.geosearch(
        GEO_KEY,
        longitude=search.lon,
        latitude=search.lat,
        width=search.width_m,
        height=search.height_m,
        unit="m",
        withcoord=True,
    )
    inside: list[str] = []
    for member, (lon, lat) in found:
        if box.contains(lon, lat):
            inside.append(member.decode() if isinstance(member, bytes) else str(member))
    return inside


async def fleet_state(
    pool: Pool,
    redis: Redis,
    *,
    where: FleetFilter,
    limit: int,
    after: str | None,
    visible_group: str | None,
) -> FleetStatePage:
    """The state of up to `limit` devices matching `where`, after the cursor `after`, in id order."""
    in_box = await devices_in_box(redis, where.bbox) if where.bbox is not None else None
    if in_box is not None and not in_box:
        return FleetStatePage(items=[], next_cursor=None)
    params: dict[str, Any] = {
        "after": after,
        "visible_group": visible_group,
        "group": where.group,
        "kind": where.kind,
        "ids": list(where.ids) if where.ids is not None else None,
        "in_box": in_box,
        "limit": limit + 1,  # one more than asked tells whether another page exists
    }
    statement = f"SELECT id FROM devices{where_clause(_FILTERS, params)} ORDER BY id LIMIT %(limit)s"
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(statement, params)
        ids = [row[0] for row in await cur.fetchall()]
    page = ids[:limit]
    states = await read_states(redis, page) if page else {}
    items = [state for state in states.values() if state is not None]
    return FleetStatePage(items=items, next_cursor=page[-1] if len(ids) > limit else None)
