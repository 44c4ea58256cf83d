"""Distances on the Earth in metres: great-circle for lengths, a local plane for shapes.

A fence is at most a few hundred kilometres across, so each gets a plane of its own (an equirectangular
projection around its centre). The projection is affine, so where a segment crosses an edge is the same
fraction of the segment in degrees and in metres; only lengths need the plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

EARTH_RADIUS_M: Final = 6_371_008.8  # the IUGG mean radius
M_PER_DEG_LAT: Final = EARTH_RADIUS_M * math.pi / 180


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two positions, in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class LocalPlane:
    """Metres east and north of an origin; accurate to a fraction of a percent within ~100 km of it."""

    lon0: float
    lat0: float
    m_per_deg_lon: float

    @classmethod
    def around(cls, lon0: float, lat0: float) -> LocalPlane:
        """The plane tangent at (lon0, lat0)."""
        return cls(lon0, lat0, M_PER_DEG_LAT * math.cos(math.radians(lat0)))

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        """A position in metres east and north of the origin."""
        return (lon - self.lon0) * self.m_per_deg_lon, (lat - self.lat0) * M_PER_DEG_LAT


def degrees_lat(metres: float) -> float:
    """Degrees of latitude spanning `metres`."""
    return metres / M_PER_DEG_LAT


def degrees_lon(metres: float, at_lat: float) -> float:
    """Degrees of longitude spanning `metres` at latitude `at_lat` (capped near the poles)."""
    return metres / (M_PER_DEG_LAT * max(math.cos(math.radians(at_lat)), 0.01))
