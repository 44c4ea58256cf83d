"""`fleet rules`: alert rules added, listed and removed from the command line, on a real database."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from cli.main import run
from models.default_rules import DEFAULT_RULES
from models.rule_store import add_default_rules

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


def test_rules_defaults_adds_each_missing_default_once_and_a_first_start_only_into_an_empty_table(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"FLEETBRIDGE_DATABASE_URL": database_url}
    names = [spec.name for spec in DEFAULT_RULES]
    assert run(["rules", "defaults"], env) == 0
    assert _names(capsys.readouterr().out) == names
    assert run(["rules", "defaults"], env) == 0
    again = capsys.readouterr()
    assert _names(again.out) == []
    assert "nothing added" in again.err
    assert run(["rules", "list"], env) == 0
    listing = capsys.readouterr().out
    assert _names(listing) == names
    assert "engine_temp > 110 for 30 s" in listing
    assert "offline for more than 600 s" in listing

    low_fuel = next(line.split()[0] for line in listing.splitlines() if "low fuel" in line)
    assert run(["rules", "remove", low_fuel], env) == 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        # `fleet up` on a stack whose rules were set up (even if some were removed) adds none back.
        assert add_default_rules(conn, "fleet up", first_start=True) == []
    assert run(["rules", "defaults"], env) == 0
    assert _names(capsys.readouterr().out) == ["low fuel"]


def _names(table: str) -> list[str]:
    """The default rules' names in a `fleet rules` table, in the order listed."""
    defaults = [spec.name for spec in DEFAULT_RULES]
    return [name for line in table.splitlines()[1:] for name in defaults if f"  {name}  " in line]


def test_rules_defaults_on_a_first_start_fill_an_empty_rule_table_once(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        added = add_default_rules(conn, "fleet up", first_start=True)
        assert [row["name"] for row in added] == [spec.name for spec in DEFAULT_RULES]
        assert {row["created_by"] for row in added} == {"fleet up"}
        assert add_default_rules(conn, "fleet up", first_start=True) == []
