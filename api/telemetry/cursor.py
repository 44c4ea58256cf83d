"""The opaque page cursor of telemetry history: the (ts, boot, seq) of the last row returned.

Version 2 (`2:<µs>:<boot>:<seq>`) follows the history's order, (ts, boot, seq): a sample is (boot, seq),
and two boots may hold samples of the same instant and seq. Version 1 (`1:<µs>:<seq>`) came from the
former (ts, seq) order; it names no boot, so it cannot say where to resume among rows of one instant
from several boots. It is recognised and refused with the instant to start again from, never guessed.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_VERSION: Final = "2"
_VERSION_TS_SEQ: Final = "1"


@dataclass(frozen=True, slots=True)
class TelemetryCursor:
    """Resume after the row with this device time, boot and sequence (rows are ordered by all three)."""

    ts: datetime
    boot: int
    seq: int


@dataclass(frozen=True, slots=True)
class FormerCursor:
    """A cursor of the former (ts, seq) order: its page ended at `ts`, with no boot to resume by."""

    ts: datetime


def encode_cursor(cursor: TelemetryCursor) -> str:
    """URL-safe text for `cursor`. Time goes as integer microseconds, PostgreSQL's precision: exact."""
    micros = (cursor.ts - _EPOCH) // _MICROSECOND
    text = f"{_VERSION}:{micros}:{cursor.boot}:{cursor.seq}"
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def decode_cursor(text: str) -> TelemetryCursor | FormerCursor | None:
    """The cursor encoded in `text`, a former one, or None when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        version, micros, *key = raw.split(":")
        ts = _EPOCH + int(micros) * _MICROSECOND
        if version == _VERSION_TS_SEQ and len(key) == 1 and int(key[0]) >= 0:
            return FormerCursor(ts)
        if version != _VERSION or len(key) != 2:
            return None
        boot, seq = int(key[0]), int(key[1])
        if boot < 0 or seq < 0:
            return None
        return TelemetryCursor(ts, boot, seq)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        return None
