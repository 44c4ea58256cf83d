"""The opaque page cursor of telemetry history: the (ts, seq) of the last row returned."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_VERSION: Final = "1"


@dataclass(frozen=True, slots=True)
class TelemetryCursor:
    """Resume after the row with this device time and sequence (rows are ordered by ts, then seq)."""

    ts: datetime
    seq: int


def encode_cursor(cursor: TelemetryCursor) -> str:
    """URL-safe text for `cursor`. Time goes as integer microseconds, PostgreSQL's precision: exact."""
    micros = (cursor.ts - _EPOCH) // _MICROSECOND
    text = f"{_VERSION}:{micros}:{cursor.seq}"
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def decode_cursor(text: str) -> TelemetryCursor | None:
    """The cursor encoded in `text`, or None when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        version, micros, seq = raw.split(":")
        if version != _VERSION or int(seq) < 0:
            return None
        return TelemetryCursor(_EPOCH + int(micros) * _MICROSECOND, int(seq))
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        return None
