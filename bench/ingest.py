"""Ingest benchmark: readings/s committed end to end by the bridge, against two baselines in one run.

The flood is published once, with every consumer's persistent session already subscribed, so the
publisher is never the bottleneck and never competes for the CPU while a consumer is measured. Then,
one after the other, each consumer drains its copy of the flood:

1. `mosquitto_sub` (C, QoS 1, same receive window): how fast the broker path alone can deliver;
2. the bridge (`python -m bridge`): decode, Redis state, COPY + COMMIT, then PUBACK;
3. a naive bridge: one INSERT and one COMMIT per message, then PUBACK (time-boxed).

Mix: each message holds `--samples` samples; each sample carries a position and fuel, engine
temperature and odometer, i.e. 4 readings. Figures are printed and written to bench/results/.

    .venv/bin/python bench/ingest.py --messages 200000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import paho.mqtt.client as mqtt
import psycopg
import redis
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from payloads import READINGS_PER_SAMPLE, truck_sample  # noqa: E402 - bench/payloads.py, beside this script
from servers import RECEIVE_MAXIMUM, progress, service_env, start_servers  # noqa: E402 - bench/servers.py, beside this script

from models.telemetry import Limits, decode_telemetry  # noqa: E402

BRIDGE_ID = "bench-bridge"  # instances are numbered: bench-bridge-1, -2, …
NAIVE_ID = "bench-naive"
SUB_ID = "bench-mosquitto-sub"
OUTSTANDING_MAX = 10_000


def make_payloads(messages: int, devices: int, samples: int, seed: int) -> list[tuple[str, bytes]]:
    """Realistic truck telemetry: per device a moving position, falling fuel, warm engine, odometer."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=1)
    seqs = [0] * devices
    out: list[tuple[str, bytes]] = []
    for n in range(messages):
        device = n % devices
        batch = []
        for _ in range(samples):
            seq = seqs[device]
            seqs[device] += 1
            batch.append(truck_sample(seq, start + timedelta(milliseconds=seq * 100), rng))
        payload = batch[0] if samples == 1 else {"samples": batch}
        out.append((f"fleet/v1/bench-{device:05d}/telemetry", msgspec.json.encode(payload)))
    return out


def paho_client(client_id: str, url: str, *, clean_start: bool, manual_ack: bool = False) -> mqtt.Client:
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=manual_ack)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    client.connect(host, int(port), clean_start=clean_start, properties=props)
    return client


def create_session(client_id: str, url: str, topic: str) -> None:
    """Subscribe once with a persistent session, so the broker queues the flood for this consumer."""
    client = paho_client(client_id, url, clean_start=True)
    done = threading.Event()
    client.on_subscribe = lambda *args: done.set()
    client.loop_start()
    client.subscribe(topic, qos=1)
    if not done.wait(10):
        raise RuntimeError(f"{client_id}: no SUBACK")
    client.disconnect()
    client.loop_stop()


def flood(url: str, payloads: list[tuple[str, bytes]]) -> float:
    """Publish every payload at QoS 1 and wait for all PUBACKs; return messages/s."""
    client = paho_client("bench-publisher", url, clean_start=True)
    # paho's packet ids wrap at 65535: more messages outstanding than that collide and are lost.
    window = threading.Semaphore(OUTSTANDING_MAX)
    client.on_publish = lambda *args: window.release()
    client.loop_start()
    started = time.perf_counter()
    for n, (topic, payload) in enumerate(payloads, 1):
        window.acquire()
        client.publish(topic, payload, qos=1)
        if n % 50000 == 0:
            progress(f"flood: {n} published")
    for _ in range(OUTSTANDING_MAX):
        window.acquire()
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return len(payloads) / elapsed


def drain_mosquitto_sub(url: str, count: int) -> float:
    host, port = url.removeprefix("mqtt://").split(":")
    argv = [
        "mosquitto_sub",
        "-h",
        host,
        "-p",
        port,
        "-V",
        "mqttv5",
        "-q",
        "1",
        "-c",
        "-i",
        SUB_ID,
        "-x",
        "3600",
        "-t",
        "fleet/v1/+/telemetry",
        "-C",
        str(count),
        "-D",
        "connect",
        "receive-maximum",
        str(RECEIVE_MAXIMUM),
    ]
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, timeout=600)
    return count / (time.perf_counter() - started)


def bridge_ids(instances: int) -> list[str]:
    return [f"{BRIDGE_ID}-{n}" for n in range(1, instances + 1)]


def drain_bridge(urls: dict[str, str], count: int, instances: int, logs: Path) -> tuple[float, dict[str, int]]:
    """Start `instances` bridge processes sharing one subscription; time until all of `count` committed."""
    r = redis.Redis.from_url(urls["redis"], decode_responses=True)
    children = []
    for client_id in bridge_ids(instances):
        env = service_env(
            {
                "FLEETBRIDGE_MQTT_URL": urls["mqtt"],
                "FLEETBRIDGE_MQTT_CLIENT_ID": client_id,
                "FLEETBRIDGE_MQTT_RECEIVE_MAXIMUM": str(RECEIVE_MAXIMUM),
                "FLEETBRIDGE_REDIS_URL": urls["redis"],
                "FLEETBRIDGE_DATABASE_URL": urls["database"],
                "FLEETBRIDGE_BRIDGE_STATS_INTERVAL_MS": "50",
            }
        )
        r.delete(f"fleet:bridge:{client_id}")
        log = (logs / f"{client_id}.log").open("wb")
        children.append(
            subprocess.Popen([sys.executable, "-m", "bridge"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        )
        log.close()
    try:
        started = None
        last_report = time.perf_counter()
        while True:
            stats = [r.hgetall(f"fleet:bridge:{client_id}") for client_id in bridge_ids(instances)]
            if started is None and all(s.get("connects") == "1" for s in stats):
                started = time.perf_counter()
            committed = sum(int(s.get("committed_messages", 0)) for s in stats)
            if committed >= count:
                break
            if any(child.poll() is not None for child in children):
                raise RuntimeError(f"a bridge exited during the benchmark: see {logs}")
            if time.perf_counter() - last_report > 5:
                last_report = time.perf_counter()
                progress(f"bridge: {committed} of {count} committed")
            time.sleep(0.01)
        assert started is not None
        elapsed = time.perf_counter() - started
        totals = {key: sum(int(s.get(key, 0)) for s in stats) for key in ("batches", "inflight_peak")}
        return count / elapsed, totals
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(30)
        r.close()


def drain_naive(urls: dict[str, str], limit_s: float) -> float:
    """One INSERT + COMMIT per message, PUBACK after it: the design the bridge replaces."""
    conn = psycopg.connect(urls["database"])
    limits = Limits(max_age=timedelta(days=30))
    done = [0]
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        device = message.topic.split("/")[2]
        result = decode_telemetry(message.payload, content_type=None, now=datetime.now(UTC), limits=limits)
        for sample in getattr(result, "samples", []):
            pos = sample.pos
            conn.execute(
                "INSERT INTO telemetry (ts, received_at, seq, lat, lon, speed, heading, fuel, engine_temp, odometer,"
                " device_id) VALUES (%s, now(), %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    sample.ts,
                    sample.seq,
                    pos.lat if pos else None,
                    pos.lon if pos else None,
                    pos.speed if pos else None,
                    pos.heading if pos else None,
                    sample.metrics.get("fuel"),
                    sample.metrics.get("engine_temp"),
                    sample.metrics.get("odometer"),
                    device + "-naive",
                ),
            )
        conn.commit()
        client.ack(message.mid, message.qos)
        with lock:
            done[0] += 1

    client = paho_client(NAIVE_ID, urls["mqtt"], clean_start=False, manual_ack=True)
    client.on_message = on_message
    started = time.perf_counter()
    client.loop_start()
    time.sleep(limit_s)
    client.disconnect()
    client.loop_stop()
    elapsed = time.perf_counter() - started
    conn.close()
    return done[0] / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1, help="samples per message")
    parser.add_argument("--naive-seconds", type=float, default=10.0)
    parser.add_argument("--bridges", type=int, default=1, help="bridge processes sharing the subscription")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="fb-bench-"))
    base.chmod(0o755)
    servers = []
    try:
        mosquitto, redis_server, postgres = start_servers(base, servers)
        urls = {"mqtt": mosquitto.url, "redis": redis_server.url, "database": postgres.url}

        create_session(SUB_ID, mosquitto.url, "fleet/v1/+/telemetry")
        for client_id in bridge_ids(args.bridges):
            create_session(client_id, mosquitto.url, "$share/fleetbridge/fleet/v1/+/telemetry")
        create_session(NAIVE_ID, mosquitto.url, "$share/naive/fleet/v1/+/telemetry")

        progress(f"generating {args.messages} messages ({args.samples} samples × {READINGS_PER_SAMPLE} readings)")
        payloads = make_payloads(args.messages, args.devices, args.samples, args.seed)
        size = sum(len(p) for _, p in payloads) / len(payloads)
        progress("flooding the broker (queued for three persistent sessions)")
        publish_rate = flood(mosquitto.url, payloads)
        del payloads

        progress("draining with mosquitto_sub")
        sub_rate = drain_mosquitto_sub(mosquitto.url, args.messages)
        progress(f"draining with {args.bridges} bridge process(es)")
        bridge_rate, stats = drain_bridge(urls, args.messages, args.bridges, base)
        progress(f"draining with the naive bridge for {args.naive_seconds:.0f} s")
        naive_rate = drain_naive(urls, args.naive_seconds)

        readings = args.samples * READINGS_PER_SAMPLE
        result = {
            "benchmark": "ingest",
            "at": datetime.now(UTC).isoformat(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "mix": {
                "messages": args.messages,
                "devices": args.devices,
                "samples_per_message": args.samples,
                "readings_per_sample": READINGS_PER_SAMPLE,
                "mean_payload_bytes": round(size),
            },
            "receive_maximum": RECEIVE_MAXIMUM,
            "publish_msgs_per_s": round(publish_rate),
            "mosquitto_sub_msgs_per_s": round(sub_rate),
            "mosquitto_sub_readings_per_s": round(sub_rate * readings),
            "bridge_msgs_per_s": round(bridge_rate),
            "bridge_readings_per_s": round(bridge_rate * readings),
            "bridge_processes": args.bridges,
            "bridge_batches": stats["batches"],
            "bridge_inflight_peak": stats["inflight_peak"],
            "naive_msgs_per_s": round(naive_rate),
            "naive_readings_per_s": round(naive_rate * readings),
            "bridge_vs_naive": round(bridge_rate / naive_rate, 1) if naive_rate else None,
            "bridge_vs_mosquitto_sub": round(bridge_rate / sub_rate, 2),
        }
        print(json.dumps(result, indent=2))
        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S}"
        out = ROOT / "bench" / "results" / f"ingest-{args.samples}spm-{args.bridges}b-{stamp}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        progress(f"wrote {out.relative_to(ROOT)}")
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
