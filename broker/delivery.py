"""Whether an account change has reached the brokers: the accounts revision and the agents' acknowledgements.

Every change of what the broker files are rendered from bumps `mqtt_accounts_revision` and NOTIFYs the
agents, in the changing transaction (models/migrations/0010_account_changes.sql). Each broker's agent
(broker/agent.py) records in `mqtt_broker_agents` the revision its broker has applied. Whoever made a
change — an API instance, the CLI, on any host — waits here, briefly and bounded, until every live agent
has reached the revision, and learns which did and which did not: a change is never reported as in
effect when no broker has it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import psycopg

Connection = psycopg.Connection[tuple[Any, ...]]

CHANGES_CHANNEL: Final = "fleetbridge_mqtt_accounts"
# How long a change waits for the agents: they apply one in milliseconds when they run.
APPLY_WAIT_S: Final = 2.0
POLL_INTERVAL_S: Final = 0.02
# An agent records that it is alive at every resync (broker/agent.py, RESYNC_INTERVAL_S); one not seen for
# this long is gone (stopped without saying so, or cut off), and nobody waits for it.
AGENT_STALE_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """Which live broker agents have applied account revision `revision`, and which not yet."""

    revision: int
    applied: tuple[str, ...]
    waiting: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """True when at least one broker has the change and every live agent applied it."""
        return bool(self.applied) and not self.waiting

    def describe(self) -> str:
        """One sentence for a person: where the change is in effect, and what to do when it is not."""
        if self.complete:
            return f"in effect on {len(self.applied)} broker(s) (agents: {', '.join(self.applied)})"
        if not self.applied and not self.waiting:
            return (
                "stored, but NOT in effect: no broker agent is running, so no broker has the change. Run "
                "`fleet broker agent` beside each Mosquitto (`fleet up` runs one for its own); it applies "
                "every stored change when it starts"
            )
        where = f"in effect on {', '.join(self.applied)}; " if self.applied else ""
        return (
            f"stored; {where}NOT yet applied by {', '.join(self.waiting)} within {APPLY_WAIT_S:g} s: check "
            "that agent's log (it applies the change when it can reach its broker and the database)"
        )


def current_revision(conn: Connection) -> int:
    """The accounts revision as this connection's snapshot sees it."""
    row = conn.execute("SELECT revision FROM mqtt_accounts_revision").fetchone()
    if row is None:
        raise RuntimeError("mqtt_accounts_revision has no row: run `fleet db migrate`")
    return int(row[0])


def request_reload(conn: Connection) -> int:
    """Have every agent rewrite its files and signal its broker now, changed or not; the new revision.

    For a change the accounts tables do not show, e.g. a certificate revocation list rewritten on the
    broker's host, and for `fleet broker reload`.
    """
    with conn.transaction():
        row = conn.execute("UPDATE mqtt_accounts_revision SET revision = revision + 1 RETURNING revision").fetchone()
        if row is None:
            raise RuntimeError("mqtt_accounts_revision has no row: run `fleet db migrate`")
        conn.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, str(row[0])))
    return int(row[0])


def delivery(conn: Connection, revision: int) -> Delivery:
    """Where `revision` stands now among the live agents."""
    rows = conn.execute(
        "SELECT name, applied_revision >= %s FROM mqtt_broker_agents"
        " WHERE seen_at > now() - make_interval(secs => %s) ORDER BY name",
        (revision, AGENT_STALE_S),
    ).fetchall()
    return Delivery(
        revision,
        applied=tuple(name for name, done in rows if done),
        waiting=tuple(name for name, done in rows if not done),
    )


def wait_applied(
    conn: Connection,
    revision: int | None = None,
    *,
    timeout_s: float = APPLY_WAIT_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Wait up to `timeout_s` until every live agent applied `revision` (default: the current one).

    `conn` must be in autocommit mode, so that each look sees the agents' latest acknowledgements. Returns
    at once when no agent is alive: there is nobody to wait for.
    """
    target = current_revision(conn) if revision is None else revision
    deadline = clock() + timeout_s
    while True:
        state = delivery(conn, target)
        if state.complete or not (state.applied or state.waiting) or clock() >= deadline:
            return state
        sleep(POLL_INTERVAL_S)
