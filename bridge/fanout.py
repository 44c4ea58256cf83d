"""Replies to devices after each commit: the `persisted` seq ranges and the `rejected` reasons."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Final

import msgspec

from bridge.decode import Decoded
from models.state import Persisted, RejectedNotice, seq_ranges
from models.topics import TopicKind, device_topic

Publish = Callable[[str, bytes], bool]
REJECTED_NOTICES_PER_BATCH: Final = 1000  # a flood of bad messages must not turn into a flood of replies
_json = msgspec.json.Encoder()


def persisted_messages(decoded: Iterable[Decoded], committed_at: datetime) -> list[tuple[str, bytes]]:
    """One `persisted` message per device: every (boot, seq) committed in this batch, as ranges; the
    samples in `ranges`, the events in `events`."""
    keys: dict[str, tuple[list[tuple[int, int]], list[tuple[int, int]]]] = {}
    for item in decoded:
        if item.device_id is not None and (item.keys or item.events):
            samples, events = keys.setdefault(item.device_id, ([], []))
            samples.extend(item.keys)
            events.extend((event.boot, event.seq) for event in item.events)
    return [
        (
            device_topic(device, TopicKind.PERSISTED),
            _json.encode(Persisted(seq_ranges(samples), committed_at, seq_ranges(events))),
        )
        for device, (samples, events) in keys.items()
    ]


def rejected_messages(decoded: Iterable[Decoded]) -> list[tuple[str, bytes]]:
    """One `rejected` message per refused message or sample, to the device that sent it."""
    out: list[tuple[str, bytes]] = []
    for item in decoded:
        if item.device_id is None:
            continue  # a topic outside the grammar has no device to tell
        digest = hashlib.sha256(item.payload).hexdigest()
        for rejection in item.rejections:
            notice = RejectedNotice(
                reason=rejection.reason,
                topic=rejection.topic,
                received_at=rejection.received_at,
                index=None if rejection.index < 0 else rejection.index,
                seq=rejection.seq,
                boot=rejection.boot,
                sha256=digest,
            )
            out.append((device_topic(item.device_id, TopicKind.REJECTED), _json.encode(notice)))
            if len(out) >= REJECTED_NOTICES_PER_BATCH:
                return out
    return out
