"""The map's road network file is the simulator's routes, regenerated from the code."""

from __future__ import annotations

import json

from firmware_sim.roads import DEFAULT_OUT, ROAD_WAYPOINTS, render, road_network
from firmware_sim.route import Route


def test_roads_committed_file_is_what_the_simulator_generates() -> None:
    # Regenerate with `python -m firmware_sim.roads` after changing route.py.
    assert DEFAULT_OUT.read_text(encoding="utf-8") == render()


def test_roads_follow_the_routes_the_trucks_drive() -> None:
    network = road_network(devices=2)
    first = network["features"][0]
    route = Route("7:truck-0001")
    x, y = next(route.waypoints())
    start = route.to_geo(x, y)

    assert [f["properties"]["route"] for f in network["features"]] == ["truck-0001", "truck-0002"]
    assert len(first["geometry"]["coordinates"]) == ROAD_WAYPOINTS
    assert first["geometry"]["coordinates"][0] == [round(start.lon, 5), round(start.lat, 5)]
    json.dumps(network)  # plain JSON
