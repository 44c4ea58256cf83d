"""The simulated device's twin: newer versions applied, known thresholds only, older ones ignored."""

from __future__ import annotations

from firmware_sim.twin import TwinState
from models.twin import DesiredConfig, ReportedConfig


def test_twin_applies_a_newer_document_and_reports_the_thresholds_it_knows() -> None:
    state = TwinState()

    report = state.apply(
        DesiredConfig(
            version=4,
            desired={"report_interval_s": 5, "thresholds": {"fuel": 12, "warp_core": 3}, "firmware_channel": "beta"},
        )
    )

    assert report == ReportedConfig(
        version=4, applied={"report_interval_s": 5, "thresholds": {"fuel": 12}, "firmware_channel": "beta"}
    )
    assert (state.version, state.report_interval_s, state.thresholds) == (4, 5, {"fuel": 12})


def test_twin_ignores_a_version_not_newer_than_the_applied_one() -> None:
    state = TwinState()
    state.apply(DesiredConfig(version=9, desired={"report_interval_s": 5}))

    assert state.apply(DesiredConfig(version=9, desired={"report_interval_s": 1})) is None
    assert state.apply(DesiredConfig(version=3, desired={"report_interval_s": 1})) is None
    assert state.report_interval_s == 5
    assert state.received == [9, 9, 3]


def test_twin_keeps_its_configuration_when_a_document_cannot_be_applied() -> None:
    state = TwinState()
    state.apply(DesiredConfig(version=1, desired={"report_interval_s": 5}))

    refused = state.apply(DesiredConfig(version=2, desired={"report_interval_s": "soon"}))

    assert isinstance(refused, str)
    assert "report_interval_s" in refused
    assert (state.version, state.report_interval_s, state.refused) == (1, 5, 1)


def test_twin_without_a_report_interval_falls_back_to_the_fleets_rate() -> None:
    state = TwinState()
    state.apply(DesiredConfig(version=1, desired={"report_interval_s": 5}))

    state.apply(DesiredConfig(version=2, desired={"firmware_channel": "stable"}))

    assert state.report_interval_s is None
