"""Jepsen-style accounting of one fault run: the devices' own records against the database's rows.

Each simulated device knows what it generated (every seq of its boot up to its next seq), what the
broker acknowledged (PUBACK), what the bridge reported as committed (`persisted`), what it still holds,
and what it dropped at its store's bound. The database knows which (device, boot, seq, ts) rows exist.
From the two:

* **stored** — distinct generated (device, boot, seq) found in `telemetry`;
* **lost** — acknowledged or persisted keys missing from the database, plus generated samples that are
  neither stored, nor still held by the device, nor dropped and counted at the bound;
* **duplicated** — rows beyond the first for any (device, boot, seq): the primary key (device, ts, seq)
  stops exact copies, so this catches a sample stored twice under different device times;
* **unexpected** — rows of the fleet that no device generated.

The pass line of every fault: 0 lost, 0 duplicated, 0 unexpected, and everything generated stored.
Pure functions over plain values, so the accounting itself is unit-tested (`test_accounting.py`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from models.state import PersistedRange

Key = tuple[str, int, int]  # device, boot, seq
Row = tuple[str, int, int, datetime]  # device, boot, seq, ts


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """What one device itself knows at the end of a run."""

    device_id: str
    boot: int
    first_seq: int
    next_seq: int  # generated: first_seq .. next_seq - 1
    acknowledged: Sequence[PersistedRange]
    persisted: Sequence[PersistedRange]
    held: int  # still in its store, unconfirmed
    dropped: int  # pushed out of a full store, counted
    refused: int  # refused by the broker or rejected by the bridge, counted

    def generated(self) -> set[Key]:
        return {(self.device_id, self.boot, seq) for seq in range(self.first_seq, self.next_seq)}


@dataclass(frozen=True, slots=True)
class Tally:
    """The accounting of one run, in samples."""

    generated: int
    acknowledged: int
    persisted: int
    stored: int
    rows: int
    held: int
    dropped: int
    refused: int
    lost: int
    lost_acknowledged: int  # of `lost`: acknowledged or persisted, yet not in the database
    duplicated: int
    unexpected: int

    @property
    def passed(self) -> bool:
        """The pass line: nothing lost, duplicated or invented, and every generated sample stored."""
        return (self.lost, self.duplicated, self.unexpected) == (0, 0, 0) and self.stored == self.generated


def _keys(device_id: str, ranges: Iterable[PersistedRange]) -> set[Key]:
    return {(device_id, r.boot, seq) for r in ranges for seq in range(r.first, r.last + 1)}


def tally(devices: Sequence[DeviceRecord], rows: Iterable[Row]) -> Tally:
    """Account for a run: `rows` are every `telemetry` row of the fleet's devices."""
    generated: set[Key] = set()
    confirmed: set[Key] = set()
    acknowledged = persisted = 0
    for device in devices:
        generated |= device.generated()
        acked = _keys(device.device_id, device.acknowledged)
        done = _keys(device.device_id, device.persisted)
        acknowledged += len(acked)
        persisted += len(done)
        confirmed |= acked | done
    per_key = Counter((device, boot, seq) for device, boot, seq, _ in rows)
    stored_keys = set(per_key)
    stored = len(stored_keys & generated)
    held = sum(d.held for d in devices)
    dropped = sum(d.dropped for d in devices)
    refused = sum(d.refused for d in devices)
    lost_acknowledged = len(confirmed - stored_keys)
    unaccounted = len(generated) - stored - held - dropped - refused
    return Tally(
        generated=len(generated),
        acknowledged=acknowledged,
        persisted=persisted,
        stored=stored,
        rows=sum(per_key.values()),
        held=held,
        dropped=dropped,
        refused=refused,
        lost=max(lost_acknowledged, unaccounted),
        lost_acknowledged=lost_acknowledged,
        duplicated=sum(n - 1 for n in per_key.values()),
        unexpected=len(stored_keys - generated),
    )
