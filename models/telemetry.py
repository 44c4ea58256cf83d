"""Telemetry wire payloads (msgspec Structs) and the one validation both ingest paths share.

A telemetry message is one sample (a JSON or MessagePack object with `seq` and `ts`) or a batch
`{"samples": [...]}` (store-and-forward backlog, high-rate sensors). Validation rejects the smallest
bad unit: a bad sample inside a batch is rejected alone; a message that cannot be parsed is rejected
whole. Unknown fields are ignored so that newer firmware keeps working against an older bridge.

Device time (`ts`) is an RFC 3339 string with an offset, or an integer of Unix epoch milliseconds.
Field sensors speak a format of their own (`SensorReading`, one or a JSON array of them), mapped onto
samples of the sending device by `sample_from_reading`; docs/topics.md states the rule.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Final, Literal, Union

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
# Integers are always milliseconds. Below 10**11 (before 1973-03-03) a value is seconds sent by mistake,
# refused with that hint rather than stored in 1970; above, year 9999 is as far as datetime goes.
EPOCH_MS_MIN: Final = 10**11
EPOCH_MS_MAX: Final = 253_402_300_799_999
if TYPE_CHECKING:
    # What code reads: by the end of decoding (`__post_init__`) an integer has become a datetime.
    DeviceTime = datetime
else:
    # What the wire carries, and what msgspec decodes and the AsyncAPI document describes.
    # The integer's bounds are checked in `epoch_ms_to_datetime`, which can say "seconds?" where msgspec could not.
    EpochMs = Annotated[int, Meta(description=f"Unix epoch milliseconds, {EPOCH_MS_MIN} to {EPOCH_MS_MAX}")]
    DeviceTime = Union[Timestamp, EpochMs]  # noqa: UP007 - a runtime alias; `|` of a typing form needs 3.12 here

MAX_METRICS_PER_SAMPLE: Final = 64
_SQL_BIGINT_MIN: Final = -(2**63)
_SQL_BIGINT_MAX: Final = 2**63 - 1
_SQL_INT_MIN: Final = -(2**31)
_SQL_INT_MAX: Final = 2**31 - 1


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """A GNSS fix. Speed in km/h, heading in degrees clockwise from north, altitude and accuracy in m."""

    lat: Lat
    lon: Lon
    alt: Alt | None = None
    speed: SpeedKmh | None = None
    heading: HeadingDeg | None = None
    accuracy: AccuracyM | None = None


class Aggregate(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One second of a high-rate sensor, summarised on the device; `std` its standard deviation, if sent."""

    min: float
    max: float
    avg: float
    count: Annotated[int, Meta(ge=1, le=1_000_000)]
    std: Annotated[float, Meta(ge=0)] | None = None


def epoch_ms_to_datetime(value: int) -> datetime:
    """Unix epoch milliseconds as an aware UTC datetime; ValueError outside what `DeviceTime` accepts."""
    if value < EPOCH_MS_MIN:
        raise ValueError(
            f"integer timestamp {value} is not Unix epoch milliseconds (it reads as before 1973;"
            " seconds? multiply by 1000)"
        )
    if value > EPOCH_MS_MAX:
        raise ValueError(f"integer timestamp {value} is beyond year 9999 in Unix epoch milliseconds")
    return _EPOCH + timedelta(milliseconds=value)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# The key of the history tables (migration 0011). A sample is (device_id, boot, seq); `ts` is in the key
# because the tables are partitioned by it (a unique key must hold the partition key), and comes right
# after the device because every reader walks one device's time in order: the key's index also serves
# history pages in (ts, boot, seq) order. The device sends a redelivered sample with its ts unchanged.
SAMPLE_KEY: Final = "(device_id, ts, boot, seq)"


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    """One sample of one device: what it measured at device time `ts`.

    `seq` is monotonic per device and `boot`; (device, boot, seq) is the sample's identity, so a
    redelivered sample is recognised and stored once, and a sample of a new boot that repeats the ts
    and seq of an earlier boot's sample is another sample. `ts` may arrive as Unix epoch milliseconds.
    """

    seq: Seq
    ts: DeviceTime
    boot: Boot = 0
    pos: Position | None = None
    metrics: Annotated[dict[MetricName, float], Meta(max_length=MAX_METRICS_PER_SAMPLE)] = {}
    agg: Annotated[dict[MetricName, Aggregate], Meta(max_length=MAX_METRICS_PER_SAMPLE)] = {}
    quality: Quality | None = None

    def __post_init__(self) -> None:
        ts: object = self.ts
        if type(ts) is int:
            msgspec.structs.force_setattr(self, "ts", epoch_ms_to_datetime(ts))

    @property
    def readings(self) -> int:
        """Readings in this sample: a position counts as one, each metric and aggregate as one."""
        return (self.pos is not None) + len(self.metrics) + len(self.agg)


class TelemetryBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Several samples of one device in one message."""

    samples: list[Sample]


SensorQualityWord = Literal["good", "uncertain", "bad"]
SENSOR_QUALITY_WORDS: Final[dict[str, int]] = {"good": 100, "uncertain": 50, "bad": 0}
SENSOR_ID_MAX_CHARS: Final = 128
SENSOR_UNIT_MAX_CHARS: Final = 32
# Field-sensor samples have no seq of their own: they get this boot, which firmware boot counters (from 0)
# never reach, and a seq derived from the sensor and the device time (`sensor_identity`). Seq gap reports
# skip boots from here up: such a seq counts nothing.
SENSOR_BOOT: Final = 2**30
_SENSOR_SEQ_BITS: Final = 62
_METRIC_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


class SensorReading(msgspec.Struct, frozen=True, kw_only=True):
    """The field-sensor format: one reading (`value`), or one second of a sensor summarised (`min`, `max`,
    `avg`, `count`, optional `stdDev`). The device is the topic's (or the HTTP credentials'), never the
    payload's; `sensorId` names the metric: `<metric>` or `<device id>.<metric>`."""

    sensor_id: Annotated[str, Meta(min_length=1, max_length=SENSOR_ID_MAX_CHARS)] = msgspec.field(name="sensorId")
    timestamp: DeviceTime
    value: float | None = None
    unit: Annotated[str, Meta(max_length=SENSOR_UNIT_MAX_CHARS)] | None = None
    quality: Quality | SensorQualityWord | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    count: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    std_dev: Annotated[float, Meta(ge=0)] | None = msgspec.field(default=None, name="stdDev")

    def __post_init__(self) -> None:
        timestamp: object = self.timestamp
        if type(timestamp) is int:
            msgspec.structs.force_setattr(self, "timestamp", epoch_ms_to_datetime(timestamp))
        summary = (self.min, self.max, self.avg, self.count)
        if self.value is None and None in summary:
            raise ValueError("a sensor reading needs `value`, or `min`, `max`, `avg` and `count` (an aggregate)")
        if self.value is not None and any(part is not None for part in summary):
            raise ValueError("a sensor reading has either `value` or `min`/`max`/`avg`/`count`, not both")

    @property
    def is_aggregate(self) -> bool:
        """True for a one-second aggregate, False for a single reading."""
        return self.value is None


def sensor_metric(sensor_id: str, device_id: str | None) -> str | None:
    """The metric a `sensorId` names: itself, or what follows the device's own id and a dot; else None."""
    if device_id is not None and sensor_id.startswith(device_id + "."):
        sensor_id = sensor_id[len(device_id) + 1 :]
    return sensor_id if _METRIC_NAME.fullmatch(sensor_id) else None


def sensor_identity(metric: str, *, aggregate: bool, ts: datetime) -> tuple[int, int]:
    """(boot, seq) of a field-sensor sample: `SENSOR_BOOT`, and a 62-bit digest of the sensor, the kind
    (reading or aggregate) and the device time to the microsecond.

    Deterministic, so a redelivered reading is stored once; distinct for every sensor, kind and instant,
    so two sensors read at the same instant are two samples under the identity (device, boot, seq), and
    every (boot, seq) in a `persisted` or `rejected` reply names exactly one reading. BLAKE2b, not `hash()`:
    the same in every process, every run.
    """
    kind = "aggregate" if aggregate else "reading"
    micros = (ts - _EPOCH) // timedelta(microseconds=1)
    digest = hashlib.blake2b(f"{kind}:{metric}:{micros}".encode(), digest_size=8).digest()
    return SENSOR_BOOT, int.from_bytes(digest, "big") >> (64 - _SENSOR_SEQ_BITS)


def sample_from_reading(reading: SensorReading, device_id: str | None) -> Sample | SampleRejection:
    """The sample a field-sensor reading stands for, or why it cannot be one (`index` left 0)."""
    metric = sensor_metric(reading.sensor_id, device_id)
    if metric is None:
        return SampleRejection(
            f"sensorId {reading.sensor_id[:SENSOR_ID_MAX_CHARS]!r} names no metric of this device:"
            " expected <metric> or <device id>.<metric>, the metric matching [a-z][a-z0-9_]{0,31}",
            0,
        )
    boot, seq = sensor_identity(metric, aggregate=reading.is_aggregate, ts=reading.timestamp)
    spec = KNOWN_METRICS.get(metric)
    if spec is not None and reading.unit is not None and reading.unit != spec.unit:
        return SampleRejection(
            f"unit {reading.unit!r} of sensor {reading.sensor_id!r} is not {metric}'s unit {spec.unit!r}", 0, seq, boot
        )
    quality = reading.quality
    if isinstance(quality, str):
        quality = SENSOR_QUALITY_WORDS[quality]
    if reading.value is not None:
        return Sample(seq=seq, ts=reading.timestamp, boot=boot, metrics={metric: reading.value}, quality=quality)
    assert reading.min is not None
    assert reading.max is not None
    assert reading.avg is not None
    assert reading.count is not None  # all four, by `__post_init__`
    summary = Aggregate(min=reading.min, max=reading.max, avg=reading.avg, count=reading.count, std=reading.std_dev)
    return Sample(seq=seq, ts=reading.timestamp, boot=boot, agg={metric: summary}, quality=quality)


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


class _FormatProbe(msgspec.Struct):
    """Which format an object is in: `sensorId` without `seq` is a field-sensor reading."""

    sensor_id: msgspec.Raw = msgspec.field(default=msgspec.Raw(b""), name="sensorId")
    seq: msgspec.Raw = msgspec.Raw(b"")


_JSON_ENVELOPE = msgspec.json.Decoder(_Envelope)
_JSON_SAMPLE = msgspec.json.Decoder(Sample)
_JSON_PROBE = msgspec.json.Decoder(_SeqProbe)
_MSGPACK_ENVELOPE = msgspec.msgpack.Decoder(_Envelope)
_MSGPACK_SAMPLE = msgspec.msgpack.Decoder(Sample)
_MSGPACK_PROBE = msgspec.msgpack.Decoder(_SeqProbe)
_JSON_FORMAT = msgspec.json.Decoder(_FormatProbe)
_MSGPACK_FORMAT = msgspec.msgpack.Decoder(_FormatProbe)
_JSON_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
_MSGPACK_ARRAY = msgspec.msgpack.Decoder(list[msgspec.Raw])
_JSON_READING = msgspec.json.Decoder(SensorReading)
_MSGPACK_READING = msgspec.msgpack.Decoder(SensorReading)
_JSON_WHITESPACE: Final = b" \t\r\n"


def is_msgpack(content_type: str | None) -> bool:
    """True when an MQTT 5 content type (or HTTP Content-Type) names MessagePack."""
    return content_type is not None and content_type.split(";")[0].strip().lower() in MSGPACK_CONTENT_TYPES


def decode_telemetry(
    payload: bytes, *, content_type: str | None, now: datetime, limits: Limits, device_id: str | None = None
) -> DecodedTelemetry | MessageRejection:
    """Decode and validate one telemetry message; data errors come back as values, never raised.

    `device_id` is the sender (the topic's device): a field sensor's `sensorId` may carry it as a prefix.
    """
    if len(payload) > limits.max_payload_bytes:
        return MessageRejection(f"payload of {len(payload)} bytes exceeds {limits.max_payload_bytes}")
    msgpack = is_msgpack(content_type)
    try:
        if b"sensorId" in payload:
            sensor = _decode_sensor(payload, msgpack=msgpack, now=now, limits=limits, device_id=device_id)
            if sensor is not None:
                return sensor
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


def _decode_sensor(
    payload: bytes, *, msgpack: bool, now: datetime, limits: Limits, device_id: str | None
) -> DecodedTelemetry | MessageRejection | None:
    """The field-sensor format (one `SensorReading` or an array of them); None: the payload is not in it."""
    if _is_array(payload, msgpack=msgpack):
        try:
            parts: list[bytes | msgspec.Raw] = list((_MSGPACK_ARRAY if msgpack else _JSON_ARRAY).decode(payload))
        except msgspec.DecodeError:
            return None
        if len(parts) > limits.max_samples_per_message:
            return MessageRejection(f"array of {len(parts)} sensor readings exceeds {limits.max_samples_per_message}")
    else:
        try:
            probe = (_MSGPACK_FORMAT if msgpack else _JSON_FORMAT).decode(payload)
        except msgspec.DecodeError:
            return None
        if not probe.sensor_id or probe.seq:
            return None
        parts = [payload]
    reading_decoder = _MSGPACK_READING if msgpack else _JSON_READING
    decoded: list[Sample | None] = []
    rejections: list[SampleRejection] = []
    for index, part in enumerate(parts):
        try:
            reading = reading_decoder.decode(part)
        except msgspec.DecodeError as exc:
            decoded.append(None)
            rejections.append(SampleRejection(f"invalid sensor reading: {exc}", index))
            continue
        sample = sample_from_reading(reading, device_id)
        if isinstance(sample, SampleRejection):
            decoded.append(None)
            rejections.append(replace(sample, index=index))
        else:
            decoded.append(sample)
    return _checked(decoded, rejections, now=now, limits=limits)


def _is_array(payload: bytes, *, msgpack: bool) -> bool:
    if msgpack:
        # fixarray, array 16, array 32
        return bool(payload) and (0x90 <= payload[0] <= 0x9F or payload[0] in (0xDC, 0xDD))
    return payload.lstrip(_JSON_WHITESPACE)[:1] == b"["


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
    # The same for boot, stored in an integer column.
    boot = found.boot if found.boot is not None and _SQL_INT_MIN <= found.boot <= _SQL_INT_MAX else None
    return seq, boot


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
        reason = _check_aggregate(name, agg)
        if reason is not None:
            return reason
    return None


def _check_aggregate(name: str, agg: Aggregate) -> str | None:
    for value in (agg.min, agg.max, agg.avg):
        reason = _check_value(name, value)
        if reason is not None:
            return f"aggregate {reason}"
    if not agg.min <= agg.avg <= agg.max:
        return f"aggregate {name}: expected min <= avg <= max"
    if agg.std is not None and not math.isfinite(agg.std):
        return f"aggregate {name}: std is not a finite number"
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
