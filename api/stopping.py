"""Whether the API process is stopping, so that long waits end by themselves rather than being cut.

The server sets it on the first SIGINT/SIGTERM (`api.server.DeadlineServer`); a long poll checks it
between its Redis waits (at most `api.live.poll.BLOCK_MS` apart) and answers what it has, so a stop
finishes within uvicorn's graceful-shutdown time instead of cancelling requests at its deadline.
"""

from __future__ import annotations

from typing import Final

from litestar.datastructures import State

STATE_KEY: Final = "stopping"


class Stopping:
    """A flag set once when the process starts to stop (a plain attribute: safe from a signal handler)."""

    def __init__(self) -> None:
        self.is_set = False

    def set(self) -> None:
        """Say the process is stopping."""
        self.is_set = True


def stopping_of(state: State) -> Stopping:
    """The app's flag, from `app.state` (a fresh, unset one for an app made without it)."""
    found = state.get(STATE_KEY)
    return found if isinstance(found, Stopping) else Stopping()
