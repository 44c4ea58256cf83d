"""A compact set of (boot, seq) pairs: which samples of one device the broker (or the bridge) confirmed.

Samples are mostly confirmed in order, so the set is kept as sorted inclusive ranges per boot: a device
that ran for a day at 1 Hz needs one range, not 86,400 entries.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from models.state import PersistedRange


class SeqLedger:
    """Sorted, merged inclusive seq ranges per boot. Not thread-safe: the owner holds its own lock."""

    __slots__ = ("_count", "_ends", "_starts")

    def __init__(self) -> None:
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 2):
            return False
        boot, seq = key
        starts = self._starts.get(boot)
        if not starts:
            return False
        i = bisect.bisect_right(starts, seq) - 1
        return i >= 0 and seq <= self._ends[boot][i]

    def add(self, boot: int, seq: int) -> bool:
        """Record one pair; False when it was already there."""
        return self.add_range(boot, seq, seq) == 1

    def add_range(self, boot: int, first: int, last: int) -> int:
        """Record `first..last` (inclusive) of `boot`; return how many pairs were new."""
        if last < first:
            return 0
        starts = self._starts.setdefault(boot, [])
        ends = self._ends.setdefault(boot, [])
        # The common case, in-order confirmation, extends the last range without a search.
        if starts and starts[-1] <= first and first <= ends[-1] + 1:
            added = max(0, last - ends[-1])
            ends[-1] = max(ends[-1], last)
            self._count += added
            return added
        lo = bisect.bisect_left(ends, first - 1)
        hi = bisect.bisect_right(starts, last + 1)
        new_first, new_last = first, last
        covered = 0
        for i in range(lo, hi):
            new_first = min(new_first, starts[i])
            new_last = max(new_last, ends[i])
            covered += ends[i] - starts[i] + 1
        starts[lo:hi] = [new_first]
        ends[lo:hi] = [new_last]
        added = (new_last - new_first + 1) - covered
        self._count += added
        return added

    def update(self, ranges: Iterable[PersistedRange]) -> int:
        """Record every range; return how many pairs were new."""
        return sum(self.add_range(r.boot, r.first, r.last) for r in ranges)

    def ranges(self) -> list[PersistedRange]:
        """Every recorded pair as sorted inclusive ranges, the shape `fleet/v1/{id}/persisted` uses."""
        return [
            PersistedRange(boot, first, last)
            for boot in sorted(self._starts)
            for first, last in zip(self._starts[boot], self._ends[boot], strict=True)
        ]
