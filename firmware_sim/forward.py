"""Store-and-forward for one device: which stored samples to publish next, and which to publish again.

A sample has one owner at a time on its way to the database, so that no two layers resend it:

| stretch | owner | resent |
|---|---|---|
| measured → first `publish()` | the store, *unsent* here | — (held while offline, then sent oldest first) |
| `publish()` → the broker's PUBACK | paho-mqtt (`outbox`) | by paho after a reconnect, with DUP set |
| PUBACK → `persisted` | the store, *awaiting* here | `persist_timeout_s` after the PUBACK, or at once after a reconnect |
| listed on `persisted` (or refused) | nobody: freed from the store | never |

A PUBACK frees nothing: the broker may still lose the message (a crash before its next snapshot, a
queue limit, no subscriber yet), and the bridge's `persisted` reply is QoS 0, so it may be lost too.
Either way the samples come again after the timeout; the database keeps one row per sample, (device, boot, seq).

What goes out, in which messages:

* a `send()` while connected, with nothing older unsent, goes out at once as one message of exactly
  those samples (`append(send_now=True)`): the live path, shaped as the fleet batches it;
* everything else — a backlog produced offline (or queued behind one), and resends — goes out via
  `take()`, resends first, oldest first, in `TelemetryBatch`es of up to `batch_max_samples` and never
  more messages than the device's free in-flight window, so a long backlog is not dumped on paho.

A silent bridge: when entries come due and the bridge has confirmed nothing since they were
acknowledged, it may be down. Then only the oldest sample still held is resent, as a probe, and the
others wait another timeout: a device whose bridge is down resends one sample per timeout, not its
whole buffer again and again. As soon as anything is confirmed again (the probe's reply, say),
everything that comes due is resent.

Refusals leave the store at once, since resending cannot help: a message the broker answers with a
failure reason code, and a sample the bridge names (boot and seq) on `rejected`. A `rejected` notice
without a seq (a message refused whole, which this simulator does not produce) names no sample: those
stay and are resent like any unconfirmed sample.

Pure bookkeeping on top of a `SampleStore`: no MQTT, no threads, no locks (the device holds its lock
around every call), and the time is passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from firmware_sim.outbox import OutboxEntry, Span
from firmware_sim.store import Record, SampleStore
from models.state import PersistedRange
from models.telemetry import Sample

_BATCH_HEAD = b'{"samples":['  # a `TelemetryBatch` exactly as msgspec encodes it
_BATCH_TAIL = b"]}"


@dataclass(frozen=True, slots=True)
class _Awaiting:
    """Store spans of a message the broker acknowledged, waiting for `persisted` since `acked_at`."""

    spans: tuple[Span, ...]
    acked_at: float


@dataclass(frozen=True, slots=True)
class _Queued:
    """Store spans to publish: a resend, or a first send the MQTT client did not take."""

    spans: tuple[Span, ...]
    resend: bool


def message(records: Sequence[Record], spans: tuple[Span, ...], *, resend: bool) -> OutboxEntry:
    """One telemetry message of `records`: the sample itself, or a `TelemetryBatch` of several."""
    if len(records) == 1:
        payload = records[0].payload
    else:
        payload = _BATCH_HEAD + b",".join(r.payload for r in records) + _BATCH_TAIL
    return OutboxEntry(
        payload=payload,
        keys=tuple((r.boot, r.seq) for r in records),
        readings=sum(r.readings for r in records),
        spans=spans,
        resend=resend,
    )


class Forwarder:
    """One device's store-and-forward bookkeeping (see the module docstring)."""

    def __init__(self, store: SampleStore, *, persist_timeout_s: float, batch_max_samples: int) -> None:
        if not persist_timeout_s > 0:
            raise ValueError("persist_timeout_s must be > 0")
        if batch_max_samples < 1:
            raise ValueError("batch_max_samples must be ≥ 1")
        self.store = store
        self.persist_timeout_s = persist_timeout_s
        self.batch_max_samples = batch_max_samples
        self._cursor = 0  # every position up to here was handed to the MQTT client by this process
        self._unsent = len(store)  # a store reopened after a restart: all of it is sent again
        self._queued: deque[_Queued] = deque()
        self._awaiting: deque[_Awaiting] = deque()  # in order of acknowledgement
        self._heard_at: float | None = None  # when the bridge last confirmed anything
        self._probed_at: float | None = None  # when the last probe went out to a silent bridge

    @property
    def unsent(self) -> int:
        """Samples stored and not yet handed to the MQTT client (by this process)."""
        return self._unsent

    @property
    def buffered(self) -> int:
        """Samples in the store: not yet persisted, refused or dropped."""
        return len(self.store)

    @property
    def awaiting_messages(self) -> int:
        """Messages acknowledged by the broker whose resend timeout is running."""
        return len(self._awaiting)

    @property
    def queued_messages(self) -> int:
        """Resends (and first sends the client did not take) waiting for room in the window."""
        return len(self._queued)

    def append(
        self, samples: Sequence[Sample], *, send_now: bool, state: bytes | None = None
    ) -> tuple[OutboxEntry | None, int]:
        """Store `samples` (and the application's `state` with them, if given); return the message to
        publish now (see the module docstring) and how many were dropped.

        With `send_now` (connected) and nothing older unsent, the message holds exactly these samples
        and they count as sent; otherwise they wait for `take()`.
        """
        appended = self.store.append(samples, state)
        dropped = set(appended.dropped)
        self._unsent += len(appended.records) - sum(1 for pos in dropped if pos > self._cursor)
        kept = [r for r in appended.records if r.pos not in dropped]
        if send_now and kept and self._unsent == len(kept):
            self._cursor = kept[-1].pos
            self._unsent = 0
            return message(kept, ((kept[0].pos, kept[-1].pos),), resend=False), len(dropped)
        return None, len(dropped)

    def take(self, now: float, *, messages: int) -> list[OutboxEntry]:
        """Up to `messages` messages to publish now: due resends first, then unsent samples, oldest first."""
        self._release_due(now)
        out: list[OutboxEntry] = []
        while len(out) < messages and self._queued:
            entry = self._take_queued()
            if entry is not None:
                out.append(entry)
        while len(out) < messages and self._unsent > 0:
            records = self.store.read_after(self._cursor, self.batch_max_samples)
            if not records:
                self._unsent = 0
                break
            self._cursor = records[-1].pos
            self._unsent = max(0, self._unsent - len(records))
            out.append(message(records, ((records[0].pos, records[-1].pos),), resend=False))
        return out

    def next_due_at(self) -> float | None:
        """When the oldest acknowledged message comes due for a resend, if any awaits `persisted`."""
        return self._awaiting[0].acked_at + self.persist_timeout_s if self._awaiting else None

    def acked(self, entry: OutboxEntry, now: float) -> None:
        """The broker acknowledged `entry`: start its resend timeout (the store keeps its samples)."""
        self._awaiting.append(_Awaiting(entry.spans, now))

    def not_taken(self, entry: OutboxEntry) -> None:
        """The MQTT client did not take `entry`: publish it again first (call newest first to keep order)."""
        self._queued.appendleft(_Queued(entry.spans, entry.resend))

    def reconnected(self) -> int:
        """A new connection: everything awaiting `persisted` is resent now; return how many messages awaited."""
        resends = len(self._awaiting)
        if self._awaiting:
            self._queued.append(_Queued(_coalesce(s for a in self._awaiting for s in a.spans), resend=True))
            self._awaiting.clear()
        return resends

    def confirm(self, ranges: Iterable[PersistedRange], now: float) -> int:
        """The bridge persisted `ranges`: free them; return how many samples left the store."""
        self._heard_at = now
        return self._freed(self.store.confirm(ranges))

    def discard(self, keys: Iterable[tuple[int, int]]) -> int:
        """These samples were refused: free them; return how many left the store."""
        return self._freed(self.store.discard(keys))

    def _freed(self, positions: list[int]) -> int:
        self._unsent -= sum(1 for pos in positions if pos > self._cursor)
        return len(positions)

    def _release_due(self, now: float) -> None:
        silent: list[_Awaiting] = []
        while self._awaiting and self._awaiting[0].acked_at + self.persist_timeout_s <= now:
            awaiting = self._awaiting.popleft()
            if self._heard_at is not None and self._heard_at >= awaiting.acked_at:
                self._queued.append(_Queued(awaiting.spans, resend=True))
            else:
                silent.append(awaiting)
        if not silent:
            return
        # Nothing confirmed since these were acknowledged: probe with the oldest sample still held (one
        # probe per timeout, however the due entries are spread over it); the rest waits another
        # timeout as one entry, its spans merged, so a long outage costs a few spans, not one per message.
        spans = _coalesce(span for a in silent for span in a.spans)
        if self._probed_at is None or now - self._probed_at >= self.persist_timeout_s:
            probe, spans = self._split_oldest(spans)
            if probe is not None:
                self._probed_at = now
                self._queued.append(_Queued((probe,), resend=True))
        if spans:
            self._awaiting.append(_Awaiting(spans, now))

    def _split_oldest(self, spans: tuple[Span, ...]) -> tuple[Span | None, tuple[Span, ...]]:
        """The span of the oldest sample the store still holds within `spans`, and the spans after it."""
        for i, (first, last) in enumerate(spans):
            found = self.store.read_after(first - 1, 1)
            if found and found[0].pos <= last:
                pos = found[0].pos
                rest = ((pos + 1, last),) if pos < last else ()
                return (first, pos), rest + spans[i + 1 :]
        return None, ()

    def _take_queued(self) -> OutboxEntry | None:
        """One message from the front of the queue: the samples its spans still hold, up to the batch size.

        Consecutive queued groups of one kind are merged, and a group larger than a batch is split:
        what does not fit stays at the front of the queue.
        """
        records: list[Record] = []
        spans: list[Span] = []
        resend = self._queued[0].resend
        while self._queued and self._queued[0].resend == resend and len(records) < self.batch_max_samples:
            pending = list(self._queued.popleft().spans)
            while pending and len(records) < self.batch_max_samples:
                first, last = pending.pop(0)
                room = self.batch_max_samples - len(records)
                read = self.store.read_after(first - 1, room)
                found = [r for r in read if r.pos <= last]
                if found:
                    records.extend(found)
                    spans.append((first, found[-1].pos))
                    if len(found) == room and found[-1].pos < last:
                        pending.insert(0, (found[-1].pos + 1, last))
            if pending:
                self._queued.appendleft(_Queued(tuple(pending), resend))
        return message(records, tuple(spans), resend=resend) if records else None


def _coalesce(spans: Iterable[Span]) -> tuple[Span, ...]:
    """`spans` sorted, with overlapping and adjacent ones merged."""
    merged: list[Span] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return tuple(merged)
