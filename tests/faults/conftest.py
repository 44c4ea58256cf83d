"""The fault suite: its marker, its parameters, and the table of results printed at the end of the run."""

from __future__ import annotations

import pytest

from tests.faults.harness import TABLE_HEAD, FaultParams, FaultResult, params_from_environment

_results: list[FaultResult] = []


def pytest_configure(config: pytest.Config) -> None:
    """Register the `faults` marker (warnings are errors here, an unknown marker among them)."""
    config.addinivalue_line("markers", "faults: fault injection through the real stack (tests/faults/)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print one table row per fault run, as docs/reliability.md shows them."""
    if not _results:
        return
    terminalreporter.section("fault runs")
    params = _results[0].params
    terminalreporter.write_line(
        f"{params.devices} devices × {params.rate_hz:g} samples/s, 4 readings per sample; outage {params.outage_s:g} s"
    )
    terminalreporter.write_line(TABLE_HEAD)
    for result in _results:
        terminalreporter.write_line(result.row())


@pytest.fixture(scope="session")
def fault_params() -> FaultParams:
    """CI's small sizes, overridden by `FLEETBRIDGE_FAULTS_<FIELD>` (see `tests/faults/harness.py`)."""
    return params_from_environment()


@pytest.fixture
def record_fault() -> list[FaultResult]:
    """Where a test puts its result, for the table at the end."""
    return _results
