"""Publish → alert on a live WebSocket, through the whole stack, beside publish → state update in the same run.

Mosquitto, `python -m bridge`, `python -m engine`, `python -m api`; one fleet-wide rule `engine_temp > 100`
(no duration). A publisher sends telemetry at `--rate` msg/s round robin over `--devices` devices for
`--seconds`, each sample timed with the wall clock at publishing (one machine, one clock); every tenth
sample of a device is hot (120 °C), the next one cool again, so the rule raises and clears all the time.
One WebSocket client subscribed to every device times:

* baseline — publish → the `state` update carrying the sample (the bridge's live path);
* alerts — publish of the hot sample → the `alert` message `raised` (bridge commit, the engine's feed and
  evaluation, `alert_events`, the API's NOTIFY-woken reader).

    .venv/bin/python bench/alert_latency.py              # 1,000 devices, 1,000 msg/s, 30 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.commands import summary  # noqa: E402
from bench.servers import bench_stack, new_results, progress, write_results  # noqa: E402

BRIDGE_ID = "alert-bench-bridge"
JWT_SECRET = "bench-alerts-secret-0123456789-0123456789"
HOT_EVERY = 10


def device_id(n: int) -> str:
    return f"hot-{n:05d}"


def publish(mqtt_url: str, rate: float, seconds: float, devices: int, stop: threading.Event) -> int:
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="alert-bench-pub", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, int(port), clean_start=True)
    client.loop_start()
    sent = 0
    start = time.monotonic()
    try:
        while (elapsed := time.monotonic() - start) < seconds and not stop.is_set():
            due = int(elapsed * rate) + 1
            while sent < due:
                device, seq = sent % devices, sent // devices
                hot = seq % HOT_EVERY == HOT_EVERY // 2
                sample = {
                    "seq": seq,
                    "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
                    "metrics": {"engine_temp": 120.0 if hot else 80.0},
                }
                client.publish(f"fleet/v1/{device_id(device)}/telemetry", json.dumps(sample).encode(), qos=1)
                sent += 1
            time.sleep(0.002)
    finally:
        client.loop_stop()
        client.disconnect()
    return sent


async def watch(ws_url: str, until: float) -> tuple[list[float], list[float]]:
    """(state latencies, alert latencies) in ms until `until` (wall clock)."""
    states: list[float] = []
    alerts: list[float] = []
    async with connect(ws_url, max_size=2**24, open_timeout=60, max_queue=None) as ws:
        await ws.send(json.dumps({"action": "subscribe", "devices": ["*"]}))
        while (left := until - time.time()) > 0:
            try:
                raw = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            now_ms = time.time() * 1000
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "state":
                metric = ((message.get("changes") or {}).get("metrics") or {}).get("engine_temp")
                if metric is not None:
                    states.append(now_ms - datetime.fromisoformat(metric["ts"]).timestamp() * 1000)
            elif kind == "alert" and message.get("event") == "raised":
                raised = datetime.fromisoformat(message["alert"]["raised_at"]).timestamp() * 1000
                alerts.append(now_ms - raised)
    return states, alerts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    results = new_results(devices=args.devices, rate=args.rate, seconds=args.seconds)
    with bench_stack("fb-alert-bench-", bridge_id=BRIDGE_ID, jwt_secret=JWT_SECRET) as stack:
        urls = stack.urls
        with psycopg.connect(urls["database"], autocommit=True) as conn:
            conn.execute(
                "INSERT INTO alert_rules (name, metric, op, threshold, severity, created_at)"
                " VALUES ('bench hot', 'engine_temp', '>', 100, 'critical', now() - interval '1 hour')"
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETBRIDGE_")}
        env |= {
            "FLEETBRIDGE_DATABASE_URL": urls["database"],
            "FLEETBRIDGE_ENGINE_POLL_INTERVAL_MS": "50",
            "FLEETBRIDGE_ENGINE_INSTANCE": "bench-0",
        }
        with (stack.base / "engine.log").open("wb") as log:
            stack.children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "engine"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            )
        ws_url = stack.api_url.replace("http://", "ws://") + f"/api/v1/live?token={stack.token}"
        progress(f"{args.devices} devices, {args.rate:.0f} msg/s for {args.seconds:.0f} s; one in {HOT_EVERY} hot")
        until = time.time() + args.seconds + 10
        stop = threading.Event()
        published: list[int] = []
        publisher = threading.Thread(
            target=lambda: published.append(publish(urls["mqtt"], args.rate, args.seconds, args.devices, stop))
        )
        publisher.start()
        states, alerts = asyncio.run(watch(ws_url, until))
        stop.set()
        publisher.join(30)
        results["published"] = sum(published)
        results["state_updates"] = summary(states) if states else {}
        results["alerts_raised"] = summary(alerts) if alerts else {}
        print(f"baseline: publish → state update: {json.dumps(results['state_updates'])}", flush=True)
        print(f"publish → alert raised: {json.dumps(results['alerts_raised'])}", flush=True)
        if states and alerts:
            ratio = {
                k: round(results["alerts_raised"][k] / results["state_updates"][k], 1) for k in ("p50_ms", "p99_ms")
            }
            results["ratio_to_baseline"] = ratio
            print(f"ratio to the state update: p50 {ratio['p50_ms']}x, p99 {ratio['p99_ms']}x", flush=True)
    write_results("alert-latency", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
