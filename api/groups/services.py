"""Device groups in PostgreSQL: a group is every name in `device_groups` or in `devices.group_name`.

Membership is the devices' `group_name` (migration 0006 explains why it has no foreign key), so the
listing is the union of described groups and named ones, counted in one statement. Deleting a group
deletes its description only, and is refused (409) while devices are in it: ungrouping them silently
would take them out of the view of every integrator limited to the group, which nobody asked for;
moving them is an explicit PATCH of each device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from psycopg.rows import dict_row

from api.devices.services import where_clause
from api.groups.schemas import Group, GroupPage
from api.pool import Pool

GROUPS_PAGE_MAX: Final = 1000
GROUPS_PAGE_DEFAULT: Final = 100

# Conditions on the group name (`n.name`), from constants; values go as parameters.
_FILTERS: Final = {
    "after": "n.name > %(after)s",
    "visible_group": "n.name = %(visible_group)s",
    "name": "n.name = %(name)s",
}


def _statement(clause: str) -> str:
    return (
        "WITH n AS (SELECT name FROM device_groups UNION SELECT group_name FROM devices WHERE group_name IS NOT NULL)"
        " SELECT n.name, g.description, g.created_at, g.updated_at, count(d.id) AS devices,"
        " count(d.id) FILTER (WHERE d.presence = 'online' AND NOT d.disabled) AS online"
        " FROM n LEFT JOIN device_groups g ON g.name = n.name LEFT JOIN devices d ON d.group_name = n.name"
        f"{clause} GROUP BY n.name, g.description, g.created_at, g.updated_at ORDER BY n.name LIMIT %(limit)s"
    )


def _group(row: Mapping[str, Any]) -> Group:
    return Group(
        name=row["name"],
        description=row["description"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        devices=row["devices"],
        online=row["online"],
    )


async def _select(pool: Pool, params: dict[str, Any]) -> list[Group]:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_statement(where_clause(_FILTERS, params)), params)
        return [_group(row) for row in await cur.fetchall()]


async def list_groups(pool: Pool, *, limit: int, after: str | None, visible_group: str | None) -> GroupPage:
    """Groups in name order, keyset-paginated (only `visible_group` unless it is None)."""
    groups = await _select(pool, {"after": after, "visible_group": visible_group, "limit": limit + 1})
    items = groups[:limit]
    return GroupPage(items=items, next_cursor=items[-1].name if len(groups) > limit else None)


async def read_group(pool: Pool, name: str) -> Group | None:
    """The group, or None when nothing describes or names it."""
    groups = await _select(pool, {"name": name, "limit": 1})
    return groups[0] if groups else None


async def describe_group(pool: Pool, name: str, description: str | None) -> bool:
    """Create or update the group's description; True when the group had none before."""
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO device_groups (name, description) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, updated_at = now()"
            " RETURNING xmax = 0",
            (name, description),
        )
        row = await cur.fetchone()
    return bool(row and row[0])


@dataclass(frozen=True, slots=True)
class HasMembers:
    """A group that cannot be deleted: devices are in it."""

    devices: int


async def delete_group(pool: Pool, name: str) -> bool | HasMembers:
    """Delete the group's description: True if there was one, `HasMembers` while devices name the group."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        # Lock the description first: a concurrent PUT of the same group waits for this answer.
        await cur.execute("SELECT 1 FROM device_groups WHERE name = %s FOR UPDATE", (name,))
        await cur.execute("SELECT count(*) FROM devices WHERE group_name = %s", (name,))
        members = await cur.fetchone()
        if members is not None and members[0] > 0:
            return HasMembers(members[0])
        await cur.execute("DELETE FROM device_groups WHERE name = %s", (name,))
        return cur.rowcount > 0
