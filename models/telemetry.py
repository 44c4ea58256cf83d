"""Telemetry wire payloads (msgspec Structs) and the one validation both ingest paths share.

A telemetry message is one sample (a JSON or MessagePack object with `seq` and `ts`) or a batch
`{"samples": [...]}` (store-and-forward backlog, high-rate sensors). Validation rejects the smallest
bad unit: a bad sample inside a batch is rejected alone; a message that cannot be parsed is rejected
whole. Unknown fields are ignored so that newer firmware keeps working against an older bridge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

import msgspec
from msgspec import Meta

MSGPACK_CONTENT_TYPES: Final = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})

Seq = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Boot = Annotated[int, Meta(ge=0, le=2**31 - 1)]
Lat = Annotated[float, Meta(ge=-90, le=90)]
Lon = Annotated[float, Meta(ge=-180, le=180)]
Alt = Annotated[float, Meta(ge=-1000, le=20000)]
SpeedKmh = Annotated[float, Meta(ge=0, le=500)]
HeadingDeg = Annotated[float, Meta(ge=0, lt=360)]
AccuracyM = Annotated[float, Meta(ge=0, le=100_000)]
Quality = Annotated[int, Meta(ge=0, le=100)]
# `$(?!\n)`, not `$`: Python's `$` also matches before a trailing newline, and "fuel\n" would slip past
# fuel's range. (`\Z` would do in Python, but JSON Schema validators read it as a literal "Z".)
MetricName = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$(?!\n)")]
Timestamp = Annotated[datetime, Meta(tz=True)]

MAX_METRICS_PER_SAMPLE: Final = 64
_SQL_BIGINT_MIN: Final = -(2**63)
_SQL_BIGINT_MAX: Final = 2**63 - 1


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """A GNSS fix. Speed in km/h, heading in degrees clockwise from north, altitude and accuracy in m."""

    lat: Lat
    lon: Lon
    alt: Alt | None = None
    speed: SpeedKmh | None = None
    heading: HeadingDeg | None = None
    accuracy: AccuracyM | None = None


class Aggregate(msgspec.Struct, frozen=True, kw_only=True):
    """One second of a high-rate sensor, summarised on the device."""

    min: float
    max: float
    avg: float
    count: Annotated[int, Meta(ge=1, le=1_000_000)]


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    """One sample of one device: what it measured at device time `ts`.

    `seq` is monotonic per device and `boot`; (device, ts, seq) is the sample's identity, so a
    redelivered sample is recognised and stored once.
    """

    seq: Seq
    ts: Timestamp
    boot: Boot = 0
    pos: Position | None = None
    metrics: Annotated[dict[MetricName, float], Meta(max_length=MAX_METRICS_PER_SAMPLE)] = {}
    agg: Annotated[dict[MetricName, Aggregate], Meta(max_length=MAX_METRICS_PER_SAMPLE)] = {}
    quality: Quality | None = None

    @property
    def readings(self) -> int:
        """Readings in this sample: a position counts as one, each metric and aggregate as one."""
        return (self.pos is not None) + len(self.metrics) + len(self.agg)


class TelemetryBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Several samples of one device in one message."""

    samples: list[Sample]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """Unit and physically valid range of a known metric."""

    unit: str
    low: float
    high: float


# Values outside these ranges are sensor faults or corrupt payloads, not readings.
KNOWN_METRICS: Final[dict[str, MetricSpec]] = {
    "fuel": MetricSpec("%", 0, 100),
    "engine_temp": MetricSpec("°C", -40, 150),
    "odometer": MetricSpec("km", 0, 10_000_000),
    "temperature": MetricSpec("°C", -40, 150),
    "pressure": MetricSpec("PSI", 0, 1000),
    "vibration": MetricSpec("mm/s", 0, 100),
    "flow": MetricSpec("L/min", 0, 10_000),
    "level": MetricSpec("%", 0, 100),
    "battery": MetricSpec("V", 0, 60),
}


# Every known metric has a typed column of its own in `telemetry` (models/migrations/0002_timeseries.sql);
# other metrics go to its `extra` column. Only these names ever reach SQL as column identifiers.
METRIC_COLUMNS: Final[tuple[str, ...]] = tuple(KNOWN_METRICS)


@dataclass(frozen=True, slots=True)
class Limits:
    """What the ingest paths accept. Read from settings at the edge and passed in."""

    max_payload_bytes: int = 256 * 1024
    max_samples_per_message: int = 1000
    future_skew: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class SampleRejection:
    """One sample of a message refused, with the reason; its neighbours are unaffected."""

    reason: str
    index: int
    seq: int | None = None
    boot: int | None = None


@dataclass(frozen=True, slots=True)
class MessageRejection:
    """A whole message refused: it could not be parsed, or was too large."""

    reason: str


@dataclass(frozen=True, slots=True)
class DecodedTelemetry:
    """The valid samples of a message and the rejections of its invalid ones."""

    samples: list[Sample]
    rejections: list[SampleRejection]


class _Envelope(msgspec.Struct):
    samples: list[msgspec.Raw] | None = None


class _SeqProbe(msgspec.Struct):
    seq: int | None = None
    boot: int | None = None


_JSON_ENVELOPE = msgspec.json.Decoder(_Envelope)
_JSON_SAMPLE = msgspec.json.Decoder(Sample)
_JSON_PROBE = msgspec.json.Decoder(_SeqProbe)
_MSGPACK_ENVELOPE = msgspec.msgpack.Decoder(_Envelope)
_MSGPACK_SAMPLE = msgspec.msgpack.Decoder(Sample)
_MSGPACK_PROBE = msgspec.msgpack.Decoder(_SeqProbe)


def is_msgpack(content_type: str | None) -> bool:
    """True when an MQTT 5 content type (or HTTP Content-Type) names MessagePack."""
    return content_type is not None and content_type.split(";")[0].strip().lower() in MSGPACK_CONTENT_TYPES


def decode_telemetry(
    payload: bytes, *, content_type: str | None, now: datetime, limits: Limits
) -> DecodedTelemetry | MessageRejection:
    """Decode and validate one telemetry message; data errors come back as values, never raised."""
    if len(payload) > limits.max_payload_bytes:
        return MessageRejection(f"payload of {len(payload)} bytes exceeds {limits.max_payload_bytes}")
    msgpack = is_msgpack(content_type)
    try:
        return _decode(payload, msgpack=msgpack, now=now, limits=limits)
    except RecursionError:
        # msgspec recurses once per level of nesting, even through an unknown field it skips: a few
        # kilobytes of `[` would otherwise escape as an exception.
        return MessageRejection(f"not valid {_format_name(msgpack)} telemetry: nested too deeply")
    except UnicodeDecodeError as exc:
        # Invalid UTF-8 in a mapping key escapes msgspec as UnicodeDecodeError, not as DecodeError.
        return MessageRejection(f"not valid {_format_name(msgpack)} telemetry: invalid UTF-8 in a key: {exc}")


def _format_name(msgpack: bool) -> str:
    return "MessagePack" if msgpack else "JSON"


def _decode(payload: bytes, *, msgpack: bool, now: datetime, limits: Limits) -> DecodedTelemetry | MessageRejection:
    envelope_decoder, sample_decoder, probe = (
        (_MSGPACK_ENVELOPE, _MSGPACK_SAMPLE, _MSGPACK_PROBE) if msgpack else (_JSON_ENVELOPE, _JSON_SAMPLE, _JSON_PROBE)
    )
    if b"samples" not in payload:
        # Fast path, one parse: nearly every live message is a single sample.
        try:
            return _checked([sample_decoder.decode(payload)], [], now=now, limits=limits)
        except msgspec.ValidationError:
            # The full path below tells one bad sample from a message that is no telemetry object at all
            # (`null`, an array) or a batch whose key is spelled with escapes (`"\u0073amples"`).
            pass
        except msgspec.DecodeError as exc:
            return MessageRejection(f"not valid {_format_name(msgpack)} telemetry: {exc}")
    try:
        envelope = envelope_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        return MessageRejection(f"not valid {_format_name(msgpack)} telemetry: {exc}")
    if envelope.samples is None:
        parts: list[bytes | msgspec.Raw] = [payload]
    else:
        if len(envelope.samples) > limits.max_samples_per_message:
            return MessageRejection(
                f"batch of {len(envelope.samples)} samples exceeds {limits.max_samples_per_message}"
            )
        parts = list(envelope.samples)
    decoded: list[Sample | None] = []
    rejections: list[SampleRejection] = []
    for index, part in enumerate(parts):
        try:
            decoded.append(sample_decoder.decode(part))
        except msgspec.DecodeError as exc:
            decoded.append(None)
            seq, boot = _probe(probe, part)
            rejections.append(SampleRejection(f"invalid sample: {exc}", index, seq, boot))
    return _checked(decoded, rejections, now=now, limits=limits)


def _checked(
    decoded: list[Sample | None], rejections: list[SampleRejection], *, now: datetime, limits: Limits
) -> DecodedTelemetry:
    """Apply `check_sample` to decoded samples; `None` marks one already rejected at its index."""
    samples: list[Sample] = []
    for index, sample in enumerate(decoded):
        if sample is None:
            continue
        reason = check_sample(sample, now=now, limits=limits)
        if reason is None:
            samples.append(sample)
        else:
            rejections.append(SampleRejection(reason, index, sample.seq, sample.boot))
    rejections.sort(key=lambda r: r.index)
    return DecodedTelemetry(samples, rejections)


def _probe(
    decoder: msgspec.json.Decoder[_SeqProbe] | msgspec.msgpack.Decoder[_SeqProbe], part: bytes | msgspec.Raw
) -> tuple[int | None, int | None]:
    """Best-effort seq/boot of an invalid sample, so the device learns which one was refused."""
    try:
        found = decoder.decode(part)
    except msgspec.DecodeError:
        return None, None
    # The refusal is stored with its seq in a bigint column: a seq it cannot hold (2**64 - 1, say)
    # would make the database refuse the dead letter itself, and the bridge retry it forever.
    seq = found.seq if found.seq is not None and _SQL_BIGINT_MIN <= found.seq <= _SQL_BIGINT_MAX else None
    return seq, found.boot


def check_sample(sample: Sample, *, now: datetime, limits: Limits) -> str | None:
    """The checks msgspec's type constraints cannot express; the reason for refusal, or None."""
    if sample.ts > now + limits.future_skew:
        return f"timestamp {sample.ts.isoformat()} is more than {limits.future_skew} in the future"
    if sample.ts < now - limits.max_age:
        return f"timestamp {sample.ts.isoformat()} is older than the retention of {limits.max_age}"
    pos = sample.pos
    if pos is not None:
        # Only MessagePack can carry NaN or infinities; JSON has no literal for them.
        for name in ("alt",):
            value = getattr(pos, name)
            if value is not None and not math.isfinite(value):
                return f"position {name} is not a finite number"
        if math.isnan(pos.lat) or math.isnan(pos.lon):
            return "position is not a finite coordinate"
    for name, value in sample.metrics.items():
        reason = _check_value(name, value)
        if reason is not None:
            return reason
    for name, agg in sample.agg.items():
        for value in (agg.min, agg.max, agg.avg):
            reason = _check_value(name, value)
            if reason is not None:
                return f"aggregate {reason}"
        if not agg.min <= agg.avg <= agg.max:
            return f"aggregate {name}: expected min <= avg <= max"
    return None


def _check_value(name: str, value: float) -> str | None:
    if not math.isfinite(value):
        return f"metric {name} is not a finite number"
    spec = KNOWN_METRICS.get(name)
    if spec is not None and not spec.low <= value <= spec.high:
        return f"metric {name}={value} outside {spec.low}…{spec.high} {spec.unit}"
    return None


def utcnow() -> datetime:
    """The wall clock in UTC; stages take `now` as an argument and call this only at the edge."""
    return datetime.now(UTC)
