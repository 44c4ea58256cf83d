"""The twin's pure parts: RFC 7396 merge patches, the effective document, validation and the difference."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from models.twin import (
    DESIRED_DECODER,
    DESIRED_MAX_BYTES,
    REPORTED_DECODER,
    DesiredConfig,
    desired_problem,
    difference,
    effective,
    merge_patch,
)

# RFC 7396, Appendix A: (original, patch, result), verbatim.
RFC_7396_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "result"), RFC_7396_EXAMPLES)
def test_merge_patch_gives_each_result_of_rfc_7396_appendix_a(original: Any, patch: Any, result: Any) -> None:
    assert merge_patch(original, patch) == result


def test_merge_patch_leaves_its_arguments_unchanged() -> None:
    original = {"thresholds": {"fuel": 10}, "x": 1}
    patch = {"thresholds": {"fuel": None, "engine_temp": 110}}

    merged = merge_patch(original, patch)

    assert merged == {"thresholds": {"engine_temp": 110}, "x": 1}
    assert original == {"thresholds": {"fuel": 10}, "x": 1}
    assert patch == {"thresholds": {"fuel": None, "engine_temp": 110}}


def test_effective_merges_the_devices_own_keys_over_its_groups_defaults() -> None:
    defaults = {"report_interval_s": 60, "thresholds": {"fuel": 10, "engine_temp": 100}, "firmware_channel": "stable"}
    own = {"report_interval_s": 5, "thresholds": {"engine_temp": 110}}

    assert effective(defaults, own) == {
        "report_interval_s": 5,
        "thresholds": {"fuel": 10, "engine_temp": 110},
        "firmware_channel": "stable",
    }


def test_desired_problem_accepts_known_and_free_form_keys() -> None:
    document = {
        "report_interval_s": 30,
        "thresholds": {"engine_temp": 110, "fuel": 12.5},
        "firmware_channel": "beta-2",
        "anything": {"nested": [1, "two"]},
    }

    assert desired_problem(document) is None


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([1, 2], "must be a JSON object"),
        ({"report_interval_s": 0}, "report_interval_s"),
        ({"report_interval_s": 86_401}, "report_interval_s"),
        ({"report_interval_s": 2.5}, "report_interval_s"),
        ({"report_interval_s": True}, "report_interval_s"),
        ({"report_interval_s": "10"}, "report_interval_s"),
        ({"thresholds": {"fuel": "low"}}, "thresholds"),
        ({"thresholds": {"fuel": False}}, "thresholds"),
        ({"thresholds": [10]}, "thresholds"),
        ({"thresholds": {"Not A Metric": 1}}, "thresholds"),
        ({"thresholds": {"fuel": float("inf")}}, "finite"),
        ({"firmware_channel": ""}, "firmware_channel"),
        ({"firmware_channel": "x" * 33}, "firmware_channel"),
        ({"firmware_channel": 7}, "firmware_channel"),
        ({"blob": "x" * DESIRED_MAX_BYTES}, "bytes"),
        ({"free": {"form": [float("inf")]}}, "finite"),
    ],
)
def test_desired_problem_names_what_is_wrong(document: object, reason: str) -> None:
    problem = desired_problem(document)

    assert problem is not None
    assert reason in problem


def test_difference_lists_the_keys_not_reported_as_desired() -> None:
    desired = {"report_interval_s": 5, "thresholds": {"fuel": 10, "tyre": 2}, "firmware_channel": "beta"}
    reported = {"report_interval_s": 5.0, "thresholds": {"fuel": 10}}

    assert difference(desired, reported) == ["firmware_channel", "thresholds"]
    assert difference(desired, None) == ["firmware_channel", "report_interval_s", "thresholds"]
    assert difference({}, reported) == []


def test_wire_payloads_round_trip_and_refuse_a_version_below_their_floor() -> None:
    sent = DesiredConfig(version=7, desired={"report_interval_s": 5})

    assert DESIRED_DECODER.decode(msgspec.json.encode(sent)) == sent
    assert REPORTED_DECODER.decode(b'{"version": 7, "applied": {}, "extra": 1}').version == 7
    with pytest.raises(msgspec.ValidationError):
        DESIRED_DECODER.decode(b'{"version": 0, "desired": {}}')
