"""A longitude/latitude bounding box, and the Redis GEOSEARCH box that covers it.

Redis's BYBOX is not a box of degrees: it is a width and a height in metres around a centre, and a
member is inside when its distance along the meridian from the centre's latitude is at most half the
height and its distance along its own parallel from the centre's longitude is at most half the width
(Redis `geohashGetDistanceIfInRectangle`). A parallel is shorter the further it is from the equator, so
the width that covers the whole box is the one measured on the box's latitude nearest the equator. The
search returns every member of the covering box with its coordinates, and `contains` keeps those inside
the degrees asked for: exact on the stored (geohash-rounded, well under a metre) positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

# Redis's own Earth radius (geohash_helper.c), so that the covering box is computed as Redis measures.
EARTH_RADIUS_M: Final = 6372797.560856
# Redis GEO indexes latitudes up to this (Web Mercator); positions beyond it are not in the index.
GEO_LAT_LIMIT: Final = 85.05112878
# Rounding slack on the covering box; exact filtering happens afterwards anyway.
COVER_MARGIN_M: Final = 1.0
COVER_FACTOR: Final = 1.001


class BoxError(ValueError):
    """A `bbox` parameter that is not `min_lon,min_lat,max_lon,max_lat` within range."""


@dataclass(frozen=True, slots=True)
class BoundingBox:
    """`min_lon ≤ lon ≤ max_lon` and `min_lat ≤ lat ≤ max_lat`, in degrees (WGS 84)."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    @classmethod
    def parse(cls, text: str) -> BoundingBox:
        """Parse `min_lon,min_lat,max_lon,max_lat`; `BoxError` says what is wrong."""
        parts = text.split(",")
        if len(parts) != 4:
            raise BoxError("bbox must be min_lon,min_lat,max_lon,max_lat (four numbers)")
        try:
            min_lon, min_lat, max_lon, max_lat = (float(part) for part in parts)
        except ValueError:
            raise BoxError("bbox must be min_lon,min_lat,max_lon,max_lat (four numbers)") from None
        if not all(math.isfinite(value) for value in (min_lon, min_lat, max_lon, max_lat)):
            raise BoxError("bbox values must be finite numbers")
        if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180 and -90 <= min_lat <= 90 and -90 <= max_lat <= 90):
            raise BoxError("bbox longitudes must be within -180…180 and latitudes within -90…90")
        if min_lat > max_lat:
            raise BoxError("bbox min_lat is above max_lat")
        if min_lon > max_lon:
            raise BoxError("bbox min_lon is east of max_lon; for a box across the antimeridian, ask for each side")
        return cls(min_lon, min_lat, max_lon, max_lat)

    def contains(self, lon: float, lat: float) -> bool:
        """True when (lon, lat) is inside the box, edges included."""
        return self.min_lon <= lon <= self.max_lon and self.min_lat <= lat <= self.max_lat


@dataclass(frozen=True, slots=True)
class CoveringSearch:
    """A GEOSEARCH FROMLONLAT … BYBOX … m whose result holds every indexed member of a `BoundingBox`."""

    lon: float
    lat: float
    width_m: float
    height_m: float


def covering_search(box: BoundingBox) -> CoveringSearch | None:
    """The search around `box` (clipped to the latitudes Redis indexes); None when none are inside it."""
    min_lat = max(box.min_lat, -GEO_LAT_LIMIT)
    max_lat = min(box.max_lat, GEO_LAT_LIMIT)
    if min_lat > max_lat:
        return None
    lat = (min_lat + max_lat) / 2
    lon = (box.min_lon + box.max_lon) / 2
    half_height = EARTH_RADIUS_M * math.radians(max_lat - min_lat) / 2
    nearest_equator = 0.0 if min_lat <= 0 <= max_lat else min(abs(min_lat), abs(max_lat))
    half_span = math.radians(box.max_lon - box.min_lon) / 2
    # Haversine distance along a parallel at `nearest_equator`, from the centre to the box's edge.
    half_width = (
        2 * EARTH_RADIUS_M * math.asin(min(1.0, math.cos(math.radians(nearest_equator)) * math.sin(half_span / 2)))
    )
    return CoveringSearch(
        lon=lon,
        lat=lat,
        width_m=2 * half_width * COVER_FACTOR + COVER_MARGIN_M,
        height_m=2 * half_height * COVER_FACTOR + COVER_MARGIN_M,
    )
