"""The benches' truck sample: a position near one town, fuel, engine temperature and odometer (4 readings)."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

READINGS_PER_SAMPLE = 4


def truck_sample(seq: int, ts: datetime, rng: random.Random) -> dict[str, Any]:
    """One sample as a device publishes it (JSON-ready)."""
    return {
        "seq": seq,
        "ts": ts.isoformat(),
        "pos": {
            "lat": 52.0 + rng.random() / 10,
            "lon": 4.0 + rng.random() / 10,
            "speed": round(rng.uniform(0, 90), 1),
            "heading": round(rng.uniform(0, 359), 1),
        },
        "metrics": {
            "fuel": round(rng.uniform(10, 100), 1),
            "engine_temp": round(rng.uniform(70, 95), 1),
            "odometer": round(100000 + seq * 0.01, 2),
        },
    }
