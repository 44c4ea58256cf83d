"""A device's sample store: every sample it measured, kept until the bridge confirms it persisted.

The store is the device's flash. A sample goes in before it is first published and leaves only when

* the bridge lists it on `fleet/v1/{id}/persisted` (`confirm`): it is in the database;
* the bridge or the broker refused it (`discard`): resending cannot help;
* the store is full (`max_samples`): the oldest samples make room for new ones, and are counted.

A broker's PUBACK frees nothing: a broker that crashes before its next snapshot loses messages it
acknowledged. The store also keeps the device's `boot` number and its next `seq`, so a restarted
device continues its seq instead of reusing it for different data; a device whose store is lost (or
unreadable) starts a new boot. Beside them it keeps the device application's own saved state (for a
truck: where it is on its route), written in the same transaction as the samples it goes with, so a
restarted device carries on from its last stored sample.

Positions (`Record.pos`) number the samples in the order they were stored and are never reused, so a
message can name the samples it carried as spans of positions (see `forward`).

Two implementations share the `SampleStore` protocol (and one contract test):

* `SqliteSampleStore`, one SQLite file per device (`{directory}/{device_id}.sqlite`). Chosen over an
  append-only segment file because `persisted` frees arbitrary (boot, seq) ranges in any order, with
  gaps (a refused sample, a sample still in another batch): a segment log would need a second durable
  "freed" map plus compaction to express that, SQLite is one indexed DELETE. The seq counter (and the
  last position) is never behind the samples: while a sample is held it carries its own seq, and the
  transaction that deletes it also saves the counters (`_load`). A sample is published only after its
  append committed, so after a crash no published seq is ever issued again.
  Settings: WAL with `synchronous=NORMAL` — a commit survives a crash of the process (a simulator
  restart, `kill -9`), not necessarily a power cut (firmware on flash would use `synchronous=FULL`, an
  fsync per append); `locking_mode=EXCLUSIVE` — a second process opening the same device's file fails
  at once instead of interleaving seqs, and the WAL index lives in memory (no `-shm` file): two file
  descriptors per device. One file per device, as each real device has its own flash: any subset of
  ids can be run again, in any number of processes.
* `MemorySampleStore`: the same rules in memory, lost with the process. For tests and throwaway runs:
  a device without a store directory has lost its counter at every start, so it starts a new boot
  (`new_boot`, from the clock) at seq 0, and (boot, seq) never repeats across runs more than a second
  apart; gap detection then sees each run as a boot of its own instead of a rewind.

Neither is thread-safe: the device holds its lock around every call.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Protocol

import msgspec

from firmware_sim.errors import StoreError
from models.state import PersistedRange
from models.telemetry import Sample, utcnow

logger = logging.getLogger(__name__)

STORE_FORMAT: Final = 1
STORE_SUFFIX: Final = ".sqlite"
STORE_FDS_PER_DEVICE: Final = 2  # the database and its WAL (EXCLUSIVE locking keeps no -shm file)
BOOT_EPOCH: Final = datetime(2020, 1, 1, tzinfo=UTC)
_UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
MAX_BOOT: Final = 2**31 - 1  # `models.telemetry.Boot`
_encode = msgspec.json.Encoder().encode


def new_boot(now: datetime) -> int:
    """The boot number of a device starting without a counter: seconds since 2020 (valid until 2088).

    A lost store cannot say which boot came before, but the clock can: every later boot is larger.
    Two stores of one device created within the same second would share a number.
    """
    return min(MAX_BOOT, max(1, int((now - BOOT_EPOCH).total_seconds())))


def _ts_us(ts: datetime) -> int:
    return (ts - _UNIX_EPOCH) // _MICROSECOND


def _from_us(ts_us: int) -> datetime:
    return _UNIX_EPOCH + ts_us * _MICROSECOND


@dataclass(frozen=True, slots=True)
class Record:
    """One stored sample: its position, its key, its device time (µs since 1970), readings, and its JSON."""

    pos: int
    boot: int
    seq: int
    ts_us: int
    readings: int
    payload: bytes

    @property
    def ts(self) -> datetime:
        """The sample's device time."""
        return _from_us(self.ts_us)


@dataclass(frozen=True, slots=True)
class Appended:
    """What `append` stored (in order), and the positions dropped to stay within the bound (oldest first).

    An append larger than the whole store drops some of its own oldest records too.
    """

    records: list[Record]
    dropped: list[int] = field(default_factory=list)


class SampleStore(Protocol):
    """Where a device keeps its samples until they are persisted; see the module docstring."""

    @property
    def boot(self) -> int:
        """The device's current boot number."""
        ...

    @property
    def next_seq(self) -> int:
        """The first seq of the current boot not yet stored."""
        ...

    @property
    def max_samples(self) -> int:
        """The bound: the store never holds more samples."""
        ...

    def __len__(self) -> int:
        """Samples held."""
        ...

    @property
    def saved_state(self) -> bytes | None:
        """The application state saved with the latest append that had one (None: never saved)."""
        ...

    def append(self, samples: Sequence[Sample], state: bytes | None = None) -> Appended:
        """Store `samples` in order (dropping the oldest beyond the bound) and advance `next_seq`; with
        `state`, save it as `saved_state` in the same write."""
        ...

    def read_after(self, pos: int, limit: int) -> list[Record]:
        """Up to `limit` records with positions above `pos`, in order."""
        ...

    def read_span(self, first: int, last: int) -> list[Record]:
        """The records still held with positions `first..last` (inclusive), in order."""
        ...

    def confirm(self, ranges: Iterable[PersistedRange]) -> list[int]:
        """Free every sample in `ranges` (the bridge persisted them); return the positions freed."""
        ...

    def discard(self, keys: Iterable[tuple[int, int]]) -> list[int]:
        """Free the samples with these (boot, seq) (they were refused); return the positions freed."""
        ...

    def reboot(self, now: datetime) -> int:
        """Start a new boot at seq 0 (the device restarted); the samples held keep their own; the new boot."""
        ...

    def oldest_ts(self) -> datetime | None:
        """The device time of the oldest sample held (by position), None when empty."""
        ...

    def close(self) -> None:
        """Release the store (idempotent)."""
        ...


def store_path(directory: Path, device_id: str) -> Path:
    """The file of one device's store (device ids are safe file names: no `/`, no leading dot)."""
    return directory / f"{device_id}{STORE_SUFFIX}"


def open_store(
    directory: Path | None, device_id: str, max_samples: int, *, now: Callable[[], datetime] = utcnow
) -> SampleStore:
    """The on-disk store of `device_id` under `directory` (created if missing), or a memory store.

    A memory store starts a new boot (from the clock `now`): without a directory nothing remembers the
    seqs an earlier run used.
    """
    if directory is None:
        return MemorySampleStore(max_samples, boot=new_boot(now()))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the store directory {directory}: {exc.strerror or exc}") from exc
    return SqliteSampleStore(store_path(directory, device_id), max_samples)


def _check_bound(max_samples: int) -> None:
    if max_samples < 1:
        raise ValueError("a store must be able to hold at least one sample")


class _StoreCounters:
    """What both stores answer alike: their bound, boot, next seq and saved state."""

    _max: int
    _boot: int
    _next_seq: int
    _saved_state: bytes | None

    @property
    def saved_state(self) -> bytes | None:
        """The application state saved with the latest append that had one (None: never saved)."""
        return self._saved_state

    @property
    def boot(self) -> int:
        """The device's current boot number."""
        return self._boot

    @property
    def next_seq(self) -> int:
        """The first seq of the current boot not yet stored."""
        return self._next_seq

    @property
    def max_samples(self) -> int:
        """The bound: the store never holds more samples."""
        return self._max


class MemorySampleStore(_StoreCounters):
    """The store's rules in memory (see the module docstring); boot and seq start where told."""

    def __init__(self, max_samples: int, *, boot: int = 0, next_seq: int = 0) -> None:
        _check_bound(max_samples)
        self._max = max_samples
        self._boot = boot
        self._next_seq = next_seq
        self._saved_state = None
        self._last_pos = 0
        self._records: OrderedDict[int, Record] = OrderedDict()  # by position, oldest first
        self._order: list[int] = []  # positions appended, some freed since (until compacted), for bisection
        self._by_key: dict[tuple[int, int], list[int]] = {}  # a list: a key is almost always unique

    def __len__(self) -> int:
        return len(self._records)

    def append(self, samples: Sequence[Sample], state: bytes | None = None) -> Appended:
        if state is not None:
            self._saved_state = state
        records: list[Record] = []
        for sample in samples:
            self._last_pos += 1
            record = Record(
                self._last_pos, sample.boot, sample.seq, _ts_us(sample.ts), sample.readings, _encode(sample)
            )
            records.append(record)
            self._records[record.pos] = record
            self._order.append(record.pos)
            self._by_key.setdefault((record.boot, record.seq), []).append(record.pos)
            if sample.boot == self._boot and sample.seq >= self._next_seq:
                self._next_seq = sample.seq + 1
        dropped: list[int] = []
        while len(self._records) > self._max:
            _, oldest = self._records.popitem(last=False)
            self._unindex(oldest)
            dropped.append(oldest.pos)
        self._compact()
        return Appended(records, dropped)

    def read_after(self, pos: int, limit: int) -> list[Record]:
        return self._scan(bisect.bisect_right(self._order, pos), None, limit)

    def read_span(self, first: int, last: int) -> list[Record]:
        return self._scan(bisect.bisect_left(self._order, first), last, None)

    def confirm(self, ranges: Iterable[PersistedRange]) -> list[int]:
        freed: list[int] = []
        for r in ranges:
            if r.last - r.first + 1 <= len(self._by_key):
                keys: Iterable[tuple[int, int]] = [(r.boot, seq) for seq in range(r.first, r.last + 1)]
            else:
                keys = [k for k in self._by_key if k[0] == r.boot and r.first <= k[1] <= r.last]
            freed.extend(self.discard(keys))
        return freed

    def discard(self, keys: Iterable[tuple[int, int]]) -> list[int]:
        freed: list[int] = []
        for key in keys:
            for pos in self._by_key.pop(key, ()):
                del self._records[pos]
                freed.append(pos)
        self._compact()
        return freed

    def reboot(self, now: datetime) -> int:
        self._boot = max(self._boot + 1, new_boot(now))
        self._next_seq = 0
        return self._boot

    def oldest_ts(self) -> datetime | None:
        for record in self._records.values():
            return record.ts
        return None

    def close(self) -> None:
        """Nothing to release."""

    def _scan(self, start: int, last: int | None, limit: int | None) -> list[Record]:
        out: list[Record] = []
        order = self._order
        for i in range(start, len(order)):
            pos = order[i]
            if last is not None and pos > last:
                break
            record = self._records.get(pos)
            if record is not None:
                out.append(record)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def _unindex(self, record: Record) -> None:
        positions = self._by_key[record.boot, record.seq]
        positions.remove(record.pos)
        if not positions:
            del self._by_key[record.boot, record.seq]

    def _compact(self) -> None:
        # Freed positions linger in `_order` until they are half of it: amortised O(1) per sample.
        if len(self._order) > 2 * len(self._records) + 64:
            self._order = list(self._records)


class SqliteSampleStore(_StoreCounters):
    """One device's samples in a SQLite file (see the module docstring for the choice and settings).

    An unreadable file (not a database, corrupt) counts as a lost store: it is moved aside to
    `…sqlite.corrupt-<unix time>` and a new store with a new boot starts in its place. A file in use
    by another connection raises `StoreError`.
    """

    def __init__(self, path: Path, max_samples: int, *, now: Callable[[], datetime] = utcnow) -> None:
        _check_bound(max_samples)
        self.path = path
        self._max = max_samples
        self.replaced_unreadable = False
        try:
            self._db = self._open(now)
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorcode not in {sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT}:
                raise _store_error(path, exc) from exc
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            logger.warning("%s is unreadable (%s): moved to %s; starting a new store and boot", path, exc, aside)
            path.rename(aside)
            path.with_name(f"{path.name}-wal").unlink(missing_ok=True)
            self.replaced_unreadable = True
            try:
                self._db = self._open(now)
            except sqlite3.Error as again:
                raise _store_error(path, again) from again
        self._saved = (0, 0)  # (next_seq, last_pos) as `meta` holds them
        self._boot, self._next_seq, self._last_pos, self._count = self._load()
        self._saved_state = self._load_state()

    def __len__(self) -> int:
        return self._count

    def append(self, samples: Sequence[Sample], state: bytes | None = None) -> Appended:
        if not samples:
            return Appended([])
        first = self._last_pos + 1
        rows = [(first + i, s.boot, s.seq, _ts_us(s.ts), s.readings, _encode(s)) for i, s in enumerate(samples)]
        last_pos = first + len(rows) - 1
        next_seq = max((s.seq + 1 for s in samples if s.boot == self._boot), default=self._next_seq)
        next_seq = max(next_seq, self._next_seq)
        count = self._count + len(rows)
        dropped: list[int] = []
        with self._transaction():
            self._db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?)", rows)
            if state is not None:
                self._db.execute(
                    "INSERT INTO saved VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state", (state,)
                )
            if count > self._max:
                dropped = [
                    pos
                    for (pos,) in self._db.execute("SELECT pos FROM samples ORDER BY pos LIMIT ?", (count - self._max,))
                ]
                self._db.execute("DELETE FROM samples WHERE pos <= ?", (dropped[-1],))
                self._save_counters(next_seq, last_pos)
        self._count = count - len(dropped)
        self._next_seq, self._last_pos = next_seq, last_pos
        if state is not None:
            self._saved_state = state
        return Appended([Record(*row) for row in rows], dropped)

    def read_after(self, pos: int, limit: int) -> list[Record]:
        return self._records("WHERE pos > ? ORDER BY pos LIMIT ?", (pos, limit))

    def read_span(self, first: int, last: int) -> list[Record]:
        return self._records("WHERE pos BETWEEN ? AND ? ORDER BY pos", (first, last))

    def confirm(self, ranges: Iterable[PersistedRange]) -> list[int]:
        params = [(r.boot, r.first, r.last) for r in ranges]
        return self._delete("DELETE FROM samples WHERE boot = ? AND seq BETWEEN ? AND ? RETURNING pos", params)

    def discard(self, keys: Iterable[tuple[int, int]]) -> list[int]:
        return self._delete("DELETE FROM samples WHERE boot = ? AND seq = ? RETURNING pos", list(keys))

    def reboot(self, now: datetime) -> int:
        boot = max(self._boot + 1, new_boot(now))
        with self._transaction():
            self._db.executemany("UPDATE meta SET value = ? WHERE key = ?", [(boot, "boot"), (0, "next_seq")])
        self._boot, self._next_seq = boot, 0
        self._saved = (0, self._saved[1])
        return boot

    def oldest_ts(self) -> datetime | None:
        try:
            row = self._db.execute("SELECT ts_us FROM samples ORDER BY pos LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from exc
        return None if row is None else _from_us(row[0])

    def close(self) -> None:
        self._db.close()

    def _open(self, now: Callable[[], datetime]) -> sqlite3.Connection:
        # timeout=0: a file another connection holds fails at once rather than after a wait.
        db = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            # EXCLUSIVE before WAL: then SQLite keeps the WAL index in memory and never creates -shm.
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("BEGIN IMMEDIATE")  # takes the lock now, and keeps it (EXCLUSIVE) until close
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            # No AUTOINCREMENT: positions come from `last_pos` (see `_load`), which saves a page per append.
            db.execute(
                "CREATE TABLE IF NOT EXISTS samples (pos INTEGER PRIMARY KEY, boot INTEGER NOT NULL, "
                "seq INTEGER NOT NULL, ts_us INTEGER NOT NULL, readings INTEGER NOT NULL, payload BLOB NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS samples_key ON samples (boot, seq)")
            # Added after format 1 shipped: an older store gains it empty, and its device starts afresh.
            db.execute("CREATE TABLE IF NOT EXISTS saved (id INTEGER PRIMARY KEY CHECK (id = 1), state BLOB NOT NULL)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (STORE_FORMAT,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('boot', ?)", (new_boot(now()),))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', 0)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('last_pos', 0)")
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        return db

    def _load(self) -> tuple[int, int, int, int]:
        """Boot, next seq, last position and count.

        An append writes only its samples; the counters in `meta` are written by the transactions that
        delete samples (`_save_counters`). So the counters are the larger of `meta` and what the
        samples still held say: a sample that was never deleted still carries its seq and position.
        """
        try:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            count, max_pos = self._db.execute("SELECT count(*), max(pos) FROM samples").fetchone()
            if meta.get("format") == STORE_FORMAT:
                (max_seq,) = self._db.execute("SELECT max(seq) FROM samples WHERE boot = ?", (meta["boot"],)).fetchone()
        except sqlite3.Error as exc:
            self._db.close()
            raise _store_error(self.path, exc) from exc
        if meta.get("format") != STORE_FORMAT:
            self._db.close()
            raise StoreError(f"{self.path} has store format {meta.get('format')}, this simulator reads {STORE_FORMAT}")
        self._saved = (int(meta["next_seq"]), int(meta["last_pos"]))
        next_seq = max(self._saved[0], -1 if max_seq is None else int(max_seq) + 1)
        last_pos = max(self._saved[1], int(max_pos or 0))
        return int(meta["boot"]), next_seq, last_pos, int(count)

    def _load_state(self) -> bytes | None:
        try:
            row = self._db.execute("SELECT state FROM saved WHERE id = 1").fetchone()
        except sqlite3.Error as exc:
            self._db.close()
            raise _store_error(self.path, exc) from exc
        return None if row is None else bytes(row[0])

    def _save_counters(self, next_seq: int, last_pos: int) -> None:
        """Within a transaction that deletes samples: keep the counters those samples carried."""
        if (next_seq, last_pos) != self._saved:
            self._db.executemany(
                "UPDATE meta SET value = ? WHERE key = ?", [(next_seq, "next_seq"), (last_pos, "last_pos")]
            )
            self._saved = (next_seq, last_pos)

    def _records(self, where: str, params: tuple[int, ...]) -> list[Record]:
        query = f"SELECT pos, boot, seq, ts_us, readings, payload FROM samples {where}"
        try:
            return [Record(*row) for row in self._db.execute(query, params)]
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from exc

    def _delete(self, statement: str, params: Sequence[tuple[int, ...]]) -> list[int]:
        if not params:
            return []
        freed: list[int] = []
        with self._transaction():
            self._save_counters(self._next_seq, self._last_pos)
            for values in params:
                freed.extend(pos for (pos,) in self._db.execute(statement, values))
        self._count -= len(freed)
        return freed

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        saved = self._saved
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                self._saved = saved
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from exc


def _store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code in {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}:
        return StoreError(f"{path} is in use by another process (or another device with the same id)")
    return StoreError(f"sample store {path}: {exc}")
