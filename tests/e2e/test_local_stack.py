"""The demo behind `./dev up`: `fleet up`'s stack starts for real, trucks move, and the broker refuses
anyone without an account."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from config import load_settings
from stack.local import LocalStack
from stack.process import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("stack")
    for folder in (base, *base.parents):
        if folder == Path("/"):
            break
        folder.chmod(folder.stat().st_mode | 0o005)  # the postgres and mosquitto users must get in
    return base / "state"


@pytest.fixture
def stack(state_dir: Path) -> Iterator[LocalStack]:
    env = {
        "FLEETBRIDGE_STACK_STATE_DIR": str(state_dir),
        "FLEETBRIDGE_STACK_MQTT_PORT": "0",
        "FLEETBRIDGE_STACK_REDIS_PORT": "0",
        "FLEETBRIDGE_STACK_POSTGRES_PORT": "0",
        "FLEETBRIDGE_API_PORT": str(free_port()),
        "FLEETBRIDGE_SIM_DEVICES": "2",
        "FLEETBRIDGE_SIM_RATE_HZ": "5",
    }
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETBRIDGE_")} | env
    local = LocalStack(load_settings(env), lambda text: None, base_env)
    try:
        yield local
    finally:
        local.down()


def mqtt_connect(url: str, credentials: tuple[str, str] | None = None) -> ReasonCode | None:
    """The CONNACK reason code for a client without credentials, or with `credentials` (user, secret)."""
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if credentials is not None:
        client.username_pw_set(*credentials)
    answer: list[ReasonCode] = []
    client.on_connect = lambda c, u, f, rc, p: answer.append(rc)
    client.connect(host, int(port))
    deadline = time.monotonic() + 5
    while not answer and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    return answer[0] if answer else None


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_local_stack_moves_trucks_with_per_device_accounts(stack: LocalStack, state_dir: Path, tls: bool) -> None:
    urls = stack.up(tls=tls)
    # With TLS the bridge (password, on the TLS listener) and the trucks (client certificates alone, on
    # the certificate listener) connect over TLS only, so moving trucks prove both carry.
    assert ("mqtts" in urls, "mqtts_certificates" in urls) == (tls, tls)
    assert stack.operator_login is not None
    user, password = stack.operator_login.split(" / ")
    base = urls["ui"].rstrip("/")
    with httpx.Client(base_url=base, timeout=10) as http:
        deadline = time.monotonic() + 60
        while True:
            try:
                token = http.post("/api/v1/auth/token", json={"username": user, "password": password})
                if token.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API never answered"
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        assert http.get("/api/v1/devices/truck-0001/state").status_code == 401
        seen: list[tuple[int, float, float]] = []
        while len(set(seen)) < 3:
            response = http.get("/api/v1/devices/truck-0001/state", headers=headers)
            if response.status_code == 200 and response.json()["position"] is not None:
                position = response.json()["position"]
                seen.append((position["seq"], position["lat"], position["lon"]))
            assert time.monotonic() < deadline, f"the truck did not move: {seen}"
            time.sleep(0.2)
        # A device provisioned through the API reaches the running demo broker: `fleet up` runs its
        # broker's agent, so the answer says the change is applied, and the new secret connects.
        created = http.post("/api/v1/devices", json={"id": "api-truck-1"}, headers=headers)
        assert created.status_code == 201, created.text
        assert created.json()["broker"]["status"] == "applied", created.json()["broker"]
        credentials = ("api-truck-1", created.json()["secret"])
        answer = mqtt_connect(urls["mqtt"], credentials)
        while answer is None or answer.is_failure:  # until the broker has handled the agent's SIGHUP
            assert time.monotonic() < deadline, f"the provisioned device was refused: {answer}"
            time.sleep(0.1)
            answer = mqtt_connect(urls["mqtt"], credentials)
        # The same device sends over HTTP: `fleet up` gives the API its own broker account, so the sample
        # goes through the bridge and the answer says it is stored.
        sample = {"seq": 1, "ts": datetime.now(UTC).isoformat(), "metrics": {"fuel": 42.0}}
        ingested = http.post("/api/v1/ingest", json=sample, auth=credentials)
        assert ingested.status_code == 200, ingested.text
        assert ingested.json()["stored_samples"] == 1
    assert [s for s, _, _ in seen] == sorted(s for s, _, _ in seen)
    assert len({(lat, lon) for _, lat, lon in seen}) > 1  # it moves
    refused = mqtt_connect(urls["mqtt"])
    assert refused is not None
    assert refused.is_failure  # not authorised: the demo broker has no anonymous access
    secrets_file = state_dir / "device-secrets.csv"
    assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"
    assert secrets_file.read_text().splitlines()[1].startswith("truck-0001,")
