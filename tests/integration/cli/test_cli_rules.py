"""`fleet rules`: alert rules added, listed and removed from the command line, on a real database."""

from __future__ import annotations

import pytest

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
