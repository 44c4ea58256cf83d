"""docs/quickstart.md, run as written: its `sh` blocks, in order, in one shell, beside a real `fleet up`.

The test does what the page's `./dev up` does (`fleet up`, here on free ports and with two simulated
trucks), in a folder of its own holding `.fleet/` and a `.venv` link, then pastes the page's commands
into bash. It checks what the page promises each step shows, and then that a second `fleet up` keeps
the port, so the device configured once publishes again with the same secret.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.process import free_port
from stack.state import running_stack

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "docs" / "quickstart.md"
START_TIMEOUT_S = 120.0
COMMANDS_TIMEOUT_S = 60.0
VARIABLES_MARK = "--- variables ---"


def shell_blocks(markdown: str) -> list[str]:
    """The fenced blocks tagged `sh`, in order (`shell` marks `./dev up`, which the test does itself)."""
    return re.findall(r"^```sh\n(.*?)^```$", markdown, flags=re.MULTILINE | re.DOTALL)


@pytest.fixture
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like a clone's: `.venv` (a link to this one's) and, once up, `.fleet/`."""
    base = tmp_path_factory.mktemp("quickstart")
    for folder in (base, *base.parents):
        if folder == Path("/"):
            break
        folder.chmod(folder.stat().st_mode | 0o005)  # the postgres and mosquitto users must get in
    (base / ".venv").symlink_to(Path(sys.prefix))
    return base


@pytest.fixture
def environment() -> dict[str, str]:
    """This environment without FLEETBRIDGE_* settings, and the stack kept off the standard ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETBRIDGE_")}
    return env | {
        "FLEETBRIDGE_STACK_MQTT_PORT": "0",
        "FLEETBRIDGE_STACK_REDIS_PORT": "0",
        "FLEETBRIDGE_STACK_POSTGRES_PORT": "0",
        "FLEETBRIDGE_API_PORT": str(free_port()),
        "FLEETBRIDGE_SIM_DEVICES": "2",
    }


class FleetUp:
    """`fleet up` as a person starts it in the first terminal; stopped (SIGINT, as Ctrl-C) at the end."""

    def __init__(self, project: Path, env: dict[str, str], log: Path) -> None:
        """Start it and wait until its state file says it runs."""
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(project / ".venv" / "bin" / "fleet"), "up"],
                cwd=project,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while running_stack(project / ".fleet") is None:
            assert self.process.poll() is None, f"fleet up exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"fleet up did not come up: {log.read_text()[-3000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        """Ctrl-C, and wait for it to stop everything it started."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def fleet_up(project: Path, environment: dict[str, str]) -> Iterator[list[FleetUp]]:
    """Starts of `fleet up` made by the test (each stopped at the end, if still running)."""
    started: list[FleetUp] = []
    yield started
    for stack in started:
        stack.stop()


def bash(script: str, project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMANDS_TIMEOUT_S,
        check=False,
    )


def test_quickstart_commands_run_as_written(
    project: Path, environment: dict[str, str], fleet_up: list[FleetUp]
) -> None:
    blocks = shell_blocks(QUICKSTART.read_text())
    assert len(blocks) >= 6, "the quickstart lost its runnable blocks"
    fleet_up.append(FleetUp(project, environment, project / "up.log"))
    # Errors stop the script; the variables the page sets are printed at the end for the checks below.
    script = "set -euo pipefail\n" + "\n".join(blocks)
    script += f'\necho \'{VARIABLES_MARK}\'\necho "PORT=$PORT"\necho "SECRET=$SECRET"\n'

    done = bash(script, project, environment)

    assert done.returncode == 0, f"the quickstart failed:\n{done.stdout}\n{done.stderr}"
    out, variables = done.stdout.split(VARIABLES_MARK)
    values = dict(line.split("=", 1) for line in variables.split())
    assert "fleetbridge is running from" in out  # fleet status
    assert re.search(r"^truck-42\s+demo\s+yes\s+active", out, flags=re.MULTILINE)  # fleet devices list
    assert '"device_id":"truck-42"' in out  # the API's state of the device …
    assert '"fuel":{"value":61.5' in out  # … with what was published
    assert '"reason":"invalid sample: Expected `float` <= 90.0 - at `$.pos.lat`"' in out  # the refusal
    assert re.search(r"^fleet/v1/truck-42/state \{", out, flags=re.MULTILINE)  # the integrator's view
    assert re.search(r"^acme\s+demo\s+active", out, flags=re.MULTILINE)  # fleet integrators list
    assert "stopped" in done.stderr  # fleet down
    assert fleet_up[0].process.wait(30) == 0

    # The next start keeps the port: the device configured once publishes again with its secret.
    fleet_up.append(FleetUp(project, environment, project / "up-again.log"))
    port, secret = shlex.quote(values["PORT"]), shlex.quote(values["SECRET"])
    again = bash(
        ". .venv/bin/activate && fleet status --field mqtt_port && "
        f"mosquitto_pub -h 127.0.0.1 -p {port} -u truck-42 -P {secret} -q 1 -t fleet/v1/truck-42/telemetry "
        f'-m \'{{"seq": 3, "ts": "\'$(date -u +%Y-%m-%dT%H:%M:%SZ)\'"}}\'',
        project,
        environment,
    )
    assert again.returncode == 0, f"{again.stdout}\n{again.stderr}"
    assert again.stdout.strip() == values["PORT"]
    assert "CHANGED" not in (project / "up-again.log").read_text()
