"""`fleet rules`: alert rules added, listed and removed from the command line, on a real database."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from cli.main import run

pytestmark = pytest.mark.integration


def test_rules_add_list_remove_and_refuse_an_unknown_metric_with_the_reason(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"FLEETBRIDGE_DATABASE_URL": database_url}
    hot = ["rules", "add", "engine overheating", "--metric", "engine_temp", "--op", ">", "--threshold", "110"]
    assert (
        run([*hot, "--for", "30", "--clear-threshold", "100", "--clear-for", "60", "--severity", "critical"], env) == 0
    )
    rule_id = capsys.readouterr().out.strip()
    assert run(["rules", "add", "x", "--metric", "warp", "--op", ">", "--threshold", "1"], env) == 2
    assert "unknown metric 'warp'" in capsys.readouterr().err

    assert run(["rules", "list"], env) == 0
    listing = capsys.readouterr().out
    assert "engine_temp > 110 for 30 s" in listing
    assert "beyond 100 for 60 s" in listing
    assert "critical" in listing

    assert run(["rules", "remove", rule_id], env) == 0
    assert run(["rules", "remove", rule_id], env) == 1
    assert run(["rules", "list"], env) == 0
    assert "engine_temp" not in capsys.readouterr().out


def test_rules_add_a_geofence_rule_naming_a_fence_and_refuse_an_unknown_fence(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"FLEETBRIDGE_DATABASE_URL": database_url}
    with psycopg.connect(database_url, autocommit=True) as conn:
        depot = [[8.0, 48.0], [8.01, 48.0], [8.01, 48.01], [8.0, 48.01], [8.0, 48.0]]
        row = conn.execute(
            "INSERT INTO geofences (name, geometry) VALUES ('Depot', %s) RETURNING id",
            (Jsonb({"type": "Polygon", "coordinates": [depot]}),),
        ).fetchone()
    assert row is not None
    assert run(["rules", "add", "yard dwell", "--op", "inside", "--fence", str(row[0]), "--for", "600"], env) == 0
    capsys.readouterr()
    assert run(["rules", "add", "x", "--op", "inside", "--fence", "999999", "--for", "600"], env) == 2
    assert "no geofence 999999" in capsys.readouterr().err
    assert run(["rules", "list"], env) == 0
    listing = capsys.readouterr().out
    assert f"inside fence {row[0]} for more than 10 min" in listing
    assert "at the exit" in listing
