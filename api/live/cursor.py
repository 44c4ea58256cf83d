"""Stream positions: the Redis Stream entry ids that live messages carry as `cursor`.

An id is `<ms>-<seq>`; ids order by (ms, seq). Clients hand them back opaquely (`?since=`), so they are
parsed and checked once at the edge, then compared as tuples.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

_PATTERN: Final = re.compile(r"(\d{1,20})-(\d{1,20})")
MAX_PART: Final = 2**64 - 1


class StreamId(NamedTuple):
    """One stream entry id, ordered like Redis orders them."""

    ms: int
    seq: int

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"

    def previous(self) -> StreamId:
        """The greatest id below this one (no entry needs to exist there)."""
        if self.seq > 0:
            return StreamId(self.ms, self.seq - 1)
        return StreamId(self.ms - 1, MAX_PART) if self.ms > 0 else self


START: Final = StreamId(0, 0)


def parse_cursor(text: str) -> StreamId | None:
    """The id `text` names, or None when it is not an entry id."""
    match = _PATTERN.fullmatch(text)
    if match is None:
        return None
    ms, seq = int(match[1]), int(match[2])
    if ms > MAX_PART or seq > MAX_PART:
        return None
    return StreamId(ms, seq)


def stream_id(text: str) -> StreamId:
    """The id of an entry Redis returned (always well formed)."""
    ms, _, seq = text.partition("-")
    return StreamId(int(ms), int(seq or 0))
