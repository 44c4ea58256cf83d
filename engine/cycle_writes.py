"""The rows a cycle writes, gathered per statement while its devices are evaluated and sent at its end.

Sent in the order the statements were declared (a stage declares its deletes before the
inserts they make room for), inside the cycle's transaction: they commit or roll back with the rest of it.
Only writes that nothing in the same cycle reads back are gathered here; a stage that reads what it wrote
(alerts, `engine/episodes.py`) writes at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

Params = Sequence[Any] | Mapping[str, Any]


class Writes:
    """Parameter rows per statement, for the statements declared at creation."""

    def __init__(self, *statements: str, returning: Sequence[str] = (), columnar: Sequence[str] = ()) -> None:
        self._rows: dict[str, list[Params]] = {statement: [] for statement in statements}
        self._returning = set(returning)
        # Statements that take each column as one array (`unnest`): all their rows in one execution, without
        # binding and sending each row. A row's key must not repeat within one (an upsert cannot touch a
        # row twice in one statement): each is written once per device and cycle.
        self._columnar = set(columnar)

    def add(self, statement: str, params: Params) -> None:
        """Write `params` through `statement` (one of those declared) at the end of the cycle."""
        self._rows[statement].append(params)

    async def send(self, conn: psycopg.AsyncConnection[Any]) -> dict[str, list[tuple[Any, ...]]]:
        """Every gathered row, in one round trip per statement; the rows returned by the statements declared
        `returning`."""
        returned: dict[str, list[tuple[Any, ...]]] = {statement: [] for statement in self._returning}
        async with conn.cursor() as cur:
            for statement, rows in self._rows.items():
                if not rows:
                    continue
                if statement in self._columnar:
                    await cur.execute(statement, [list(column) for column in zip(*rows, strict=True)])
                    continue
                if statement not in self._returning:
                    await cur.executemany(statement, rows)
                    continue
                await cur.executemany(statement, rows, returning=True)
                while True:
                    if cur.pgresult is not None and cur.pgresult.status == psycopg.pq.ExecStatus.TUPLES_OK:
                        returned[statement].extend(await cur.fetchall())
                    if not cur.nextset():
                        break
        for rows in self._rows.values():
            rows.clear()
        return returned
