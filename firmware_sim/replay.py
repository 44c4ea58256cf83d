"""Replay a recorded trip through one simulated device.

File format (JSON, UTF-8)::

    {
      "device_id": "truck-0042",
      "samples": [
        {"seq": 0, "ts": "2026-11-20T08:00:00Z", "boot": 0,
         "pos": {"lat": 52.52, "lon": 13.405, "speed": 31.5, "heading": 87.0},
         "metrics": {"fuel": 71.2, "engine_temp": 88.9, "odometer": 120345.6}, "quality": 97},
        ...
      ]
    }

Each element of `samples` is a `models.telemetry.Sample` exactly as devices publish it (the same JSON,
the same constraints; unknown fields are ignored, as the bridge ignores them). Samples are replayed in
time order (a stable sort by `ts`), keeping their `seq` and `boot`. A fleet's own telemetry, captured
from `fleet/v1/{id}/telemetry` and wrapped in this envelope, is a valid recording.

Timing: the gaps between samples are kept, divided by `speed` (2.0 plays twice as fast; 0 sends
everything at once). Timestamps are either kept as recorded (replaying the same file twice then stores
nothing twice: the bridge's key is device, time and seq; but recordings older than the bridge's
retention are rejected), or re-based: shifted so that each sample's time is its send time (the first
sample at `start`, later ones at `start + gap / speed`), or, with `speed` 0, so that the last sample is
at `start` and the others keep their gaps before it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

from firmware_sim.errors import RecordingError
from models.telemetry import Sample
from models.topics import is_device_id


class Recording(msgspec.Struct, frozen=True, kw_only=True):
    """A recorded trip: one device's samples (the file format above)."""

    device_id: str
    samples: list[Sample]


_RECORDING = msgspec.json.Decoder(Recording)


@dataclass(frozen=True, slots=True)
class ReplayStep:
    """Send `sample` `offset_s` seconds after the replay starts."""

    offset_s: float
    sample: Sample


def parse_recording(data: bytes | str) -> Recording:
    """Decode a recording; raise `RecordingError` with the reason when it does not fit the format."""
    try:
        recording = _RECORDING.decode(data)
    except msgspec.DecodeError as exc:
        raise RecordingError(f"not a valid recording: {exc}") from exc
    if not is_device_id(recording.device_id):
        raise RecordingError(f"not a valid recording: device_id {recording.device_id!r} is not a valid device id")
    return recording


def load_recording(path: Path) -> Recording:
    """Read and decode a recording file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RecordingError(f"cannot read recording {path}: {exc.strerror or exc}") from exc
    try:
        return parse_recording(data)
    except RecordingError as exc:
        raise RecordingError(f"{path}: {exc}") from exc


def encode_recording(recording: Recording) -> bytes:
    """The file form of a recording."""
    return msgspec.json.encode(recording)


def plan_replay(recording: Recording, *, speed: float = 1.0, start: datetime | None = None) -> list[ReplayStep]:
    """When to send each sample, and with which timestamp (re-based to `start` when it is given)."""
    if speed < 0:
        raise ValueError("speed must be ≥ 0 (0: as fast as possible)")
    if start is not None and start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    samples = sorted(recording.samples, key=lambda s: s.ts)
    if not samples:
        return []
    first, last = samples[0].ts, samples[-1].ts
    steps: list[ReplayStep] = []
    for sample in samples:
        gap_s = (sample.ts - first).total_seconds()
        offset_s = gap_s / speed if speed else 0.0
        if start is None:
            ts = sample.ts
        elif speed:
            ts = start + timedelta(seconds=offset_s)
        else:
            ts = start - (last - sample.ts)
        steps.append(ReplayStep(offset_s, msgspec.structs.replace(sample, ts=ts)))
    return steps


def play(
    steps: list[ReplayStep],
    send: Callable[[Sample], None],
    *,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Send each step at its offset from now (drift-free); return how many were sent before `stop`."""
    stop = stop or threading.Event()
    start = clock()
    sent = 0
    for step in steps:
        delay = step.offset_s - (clock() - start)
        if (delay > 0 and stop.wait(delay)) or stop.is_set():
            break
        send(step.sample)
        sent += 1
    return sent
