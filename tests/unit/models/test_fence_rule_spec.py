"""Geofence rules as operators write them: a fence and at most a duration, refused with a reason otherwise."""

from __future__ import annotations

from typing import Any

import msgspec

from models.rules import RuleSpec, duration_text, fence_condition_text, rule_problem


def problem(**fields: Any) -> str | None:
    return rule_problem(msgspec.convert({"name": "yard dwell"} | fields, RuleSpec))


def test_fence_rule_spec_each_op_takes_a_fence_and_its_duration() -> None:
    assert problem(op="inside", fence_id=3, for_s=600, kind="truck") is None
    assert problem(op="entered", fence_id=3) is None
    assert problem(op="left", fence_id=3) is None
    assert problem(op="left", fence_id=3, for_s=900) is None


def test_fence_rule_spec_refuses_what_does_not_fit_with_the_reason() -> None:
    assert problem(op="inside", for_s=600) == "op 'inside' takes a fence_id (GET /api/v1/geofences)"
    assert (problem(op="inside", fence_id=3) or "").startswith("op 'inside' takes for_s of at least 1 second")
    assert (problem(op="entered", fence_id=3, for_s=60) or "").startswith("op 'entered' alerts at the enter")
    assert (problem(op="left", fence_id=3, metric="fuel") or "").startswith("op 'left' takes no metric")
    assert problem(op="inside", fence_id=3, for_s=60, clear_for_s=5) == (
        "op 'inside' clears when the device crosses back: no clear_for_s"
    )
    assert problem(op=">", metric="fuel", threshold=5, fence_id=3) == (
        "op '>' takes no fence_id: only the geofence ops (entered, inside, left) do"
    )


def test_fence_rule_spec_conditions_read_as_people_say_them() -> None:
    assert fence_condition_text("inside", 600, "Depot") == "inside 'Depot' for more than 10 min"
    assert fence_condition_text("entered", 0, "Depot") == "entered 'Depot'"
    assert fence_condition_text("left", 7200, "Depot") == "left 'Depot' (outside for more than 2 h)"
    assert [duration_text(s) for s in (0, 45, 90, 600, 3600)] == ["0 s", "45 s", "90 s", "10 min", "1 h"]
