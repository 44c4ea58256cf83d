"""Fault bench: the fault suite's scenarios with long outages and higher rates, as a table of figures.

The same runs as `tests/faults/` (the same `FaultRig`, faults and accounting; see
`tests/faults/harness.py`), with sizes given on the command line instead of CI's small defaults. Each
scenario starts its own Mosquitto, Redis and PostgreSQL under a temporary folder, drives a simulated
fleet through the project's TCP proxy, injects its fault, and accounts from the devices' own records
against the database: generated, acknowledged, stored, lost, duplicated, and the recovery times (end
of the fault → first commit, → backlog from before the fault's end stored).

    .venv/bin/python bench/faults.py --devices 40 --rate-hz 25 --outage-s 30 --kills 10
    .venv/bin/python bench/faults.py --scenario postgres-immediate --outage-s 300

Prints the table and writes it, with the parameters and each run's full tally, to
`bench/results/faults-<time>.txt`. Exits 1 when any run lost or duplicated a sample.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults.harness import FAULTS, TABLE_HEAD, FaultParams, FaultResult, FaultRig, run_fault  # noqa: E402


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def parse() -> tuple[FaultParams, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(FaultParams):
        kind = int if f.type == "int" else float
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    names = [fault.name for fault in FAULTS]
    parser.add_argument("--scenario", action="append", choices=names, help="run only these (repeatable)")
    args = parser.parse_args()
    params = FaultParams(**{f.name: getattr(args, f.name) for f in dataclasses.fields(FaultParams)})
    return params, args.scenario or names


def main() -> int:
    params, chosen = parse()
    results: list[FaultResult] = []
    work = Path(tempfile.mkdtemp(prefix="fb-faults-"))
    work.chmod(0o755)  # the servers' own users (postgres, mosquitto) must enter it
    try:
        for fault in (f for f in FAULTS if f.name in chosen):
            with FaultRig(work / fault.name, params) as rig:
                result = run_fault(rig, fault, progress=progress)
            results.append(result)
            progress(f"{fault.name}: {result.tally}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = [
        f"fault bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "command: " + " ".join(["bench/faults.py", *sys.argv[1:]]),
        f"parameters: {params}",
        f"{params.devices} devices × {params.rate_hz:g} samples/s (1 sample per message, 4 readings per sample)",
        "",
        TABLE_HEAD,
        *(result.row() for result in results),
        "",
        *(f"{result.scenario}: {result.tally}; fault lasted {result.fault_s:.1f} s" for result in results),
    ]
    text = "\n".join(summary) + "\n"
    print(text)
    out = ROOT / "bench" / "results" / f"faults-{datetime.now(UTC):%Y%m%dT%H%M%S}.txt"
    out.write_text(text)
    progress(f"wrote {out.relative_to(ROOT)}")
    return 0 if all(result.tally.passed for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
