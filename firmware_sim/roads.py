"""The simulator's road network as GeoJSON, for the operator map's offline background.

No road data exists offline, and the simulated trucks drive streets that `route.Route` makes up; this
draws those very streets: the first `ROAD_WAYPOINTS` intersections of the route of every device of the
local stack's fleet (the same ids and seed `fleet up` uses), so the map shows the roads its trucks are on.
Written by `python -m firmware_sim.roads [file]` into the web app's static folder; a unit test regenerates
it and compares, so the file cannot drift from the code.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any, Final

from firmware_sim.fleet import FleetOptions, device_ids
from firmware_sim.route import DEFAULT_CENTRE, GeoPoint, Route

ROAD_WAYPOINTS: Final = 120
ROAD_DEVICES: Final = 20  # the local stack's default fleet (sim.devices)
_FLEET_DEFAULTS: Final = FleetOptions()
COORD_DECIMALS: Final = 5  # about a metre: finer than a street's width, and a smaller file
DEFAULT_OUT: Final = Path(__file__).resolve().parent.parent / "api" / "ui" / "static" / "map" / "roads.geojson"


def road_network(
    *,
    prefix: str = _FLEET_DEFAULTS.prefix,
    devices: int = ROAD_DEVICES,
    seed: int | str = _FLEET_DEFAULTS.seed,
    centre: GeoPoint = DEFAULT_CENTRE,
    waypoints: int = ROAD_WAYPOINTS,
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection: one LineString per device's route (`[lon, lat]`, RFC 7946)."""
    features = []
    for device_id in device_ids(prefix, devices):
        # The same key a `Truck` gives its route (firmware_sim/truck.py).
        route = Route(f"{seed}:{device_id}", centre=centre)
        coordinates = []
        for x, y in itertools.islice(route.waypoints(), waypoints):
            point = route.to_geo(x, y)
            coordinates.append([round(point.lon, COORD_DECIMALS), round(point.lat, COORD_DECIMALS)])
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": coordinates},
                "properties": {"route": device_id},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def render() -> str:
    """The file's text, exactly as committed."""
    return json.dumps(road_network(), separators=(",", ":")) + "\n"


def main(argv: list[str]) -> int:
    """Write the road network to the file named in `argv` (default: the web app's static folder)."""
    out = Path(argv[0]) if argv else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
