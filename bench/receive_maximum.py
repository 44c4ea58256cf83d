"""Receive Maximum bench: how many unacknowledged messages a broker sends a reconnecting session with a backlog.

The bridge acknowledges a message only after its batch commits, so MQTT 5's Receive Maximum should bound
what it holds. Mosquitto 2.0.11 was seen sending far more after a reconnect with a backlog (upstream
issue eclipse-mosquitto/mosquitto#2301), which is why the bridge gates its own reads
(`bridge.max_held_messages`, docs/architecture.md). This measures the overshoot on the installed broker,
or on `--binary`:

1. a subscriber (paho, MQTT 5, manual acknowledgement, Receive Maximum `--receive-maximum`) subscribes at
   QoS 1 with a persistent session;
2. a publisher leaves `--backlog` QoS 1 messages for it, and the subscriber goes away: by default holding
   a full window unacknowledged, as a bridge whose connection is lost does (`--idle-disconnect`: holding
   nothing, before the backlog is published);
3. the subscriber comes back and drains the backlog like the bridge does: it holds what arrives and
   acknowledges nothing for `--first-ack-ms` (a slow first commit), then everything held every
   `--ack-every-ms` (a batch commit), counting the most messages held unacknowledged at once.

A broker that honours Receive Maximum never exceeds it. Figures go to stdout and bench/results/.

    .venv/bin/python bench/receive_maximum.py
    .venv/bin/python bench/receive_maximum.py --binary /path/to/other/mosquitto
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broker.process import mosquitto_version, start_mosquitto  # noqa: E402
from stack.process import LOOPBACK  # noqa: E402

TOPIC = "bench/receive-maximum"
SUBSCRIBER_ID = "rm-bench-subscriber"
CONNECT_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 120.0


@dataclass
class Holder:
    """What the subscriber holds unacknowledged, and the most it ever held at once."""

    client: mqtt.Client
    held: list[int] = field(default_factory=list)
    received: int = 0
    acknowledged: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.held.append(message.mid)
            self.received += 1
            self.peak = max(self.peak, len(self.held))

    def acknowledge_all(self) -> None:
        with self.lock:
            held, self.held = self.held, []
        for mid in held:
            self.client.ack(mid, 1)
        self.acknowledged += len(held)


def _client(client_id: str, *, receive_maximum: int | None = None, manual_ack: bool = False) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    return client


def _connect(client: mqtt.Client, port: int, *, receive_maximum: int | None = None) -> None:
    connected: queue.Queue[int] = queue.Queue()
    client.on_connect = lambda _c, _u, _f, code, _p: connected.put(code.value)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 3600
    if receive_maximum is not None:
        properties.ReceiveMaximum = receive_maximum
    client.connect(LOOPBACK, port, clean_start=False, properties=properties)
    client.loop_start()
    code = connected.get(timeout=CONNECT_TIMEOUT_S)
    if code != 0:
        raise RuntimeError(f"CONNACK {code:#x}")


def measure(
    port: int,
    *,
    receive_maximum: int,
    backlog: int,
    ack_every_s: float,
    first_ack_s: float,
    held_at_disconnect: bool,
) -> dict[str, Any]:
    """Leave `backlog` messages for an offline session, reconnect it, drain; the peak held unacknowledged.

    With `held_at_disconnect` the session goes offline holding a full window of unacknowledged messages.
    """
    subscriber = _client(SUBSCRIBER_ID, manual_ack=True)
    _connect(subscriber, port, receive_maximum=receive_maximum)
    subscribed: queue.Queue[int] = queue.Queue()
    subscriber.on_subscribe = lambda _c, _u, _m, codes, _p: subscribed.put(codes[0].value)
    subscriber.subscribe(TOPIC, qos=1)
    subscribed.get(timeout=CONNECT_TIMEOUT_S)
    first = Holder(subscriber)
    subscriber.on_message = first.on_message
    if not held_at_disconnect:
        subscriber.disconnect()
        subscriber.loop_stop()

    publisher = _client("rm-bench-publisher")
    _connect(publisher, port)
    payload = b"x" * 100
    infos = [publisher.publish(TOPIC, payload, qos=1) for _ in range(backlog)]
    for info in infos:
        info.wait_for_publish(timeout=DRAIN_TIMEOUT_S)
    publisher.disconnect()
    publisher.loop_stop()
    if held_at_disconnect:
        # The bridge's case: its connection ends with a full window unacknowledged (a lost connection,
        # a restart), the rest of the backlog queued behind it.
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while first.received < min(receive_maximum, backlog) and time.monotonic() < deadline:
            time.sleep(0.01)
        subscriber.disconnect()
        subscriber.loop_stop()

    subscriber = _client(SUBSCRIBER_ID, manual_ack=True)
    holder = Holder(subscriber)
    subscriber.on_message = holder.on_message
    started = time.monotonic()
    _connect(subscriber, port, receive_maximum=receive_maximum)
    # The first batch commits late (a slow database): whatever the broker sends meanwhile is held.
    time.sleep(first_ack_s)
    held_before_first_ack = holder.peak
    while holder.acknowledged < backlog and time.monotonic() - started < DRAIN_TIMEOUT_S:
        time.sleep(ack_every_s)
        holder.acknowledge_all()
    elapsed = time.monotonic() - started
    subscriber.disconnect()
    subscriber.loop_stop()
    return {
        "receive_maximum": receive_maximum,
        "backlog": backlog,
        "ack_every_ms": round(ack_every_s * 1000),
        "held_at_disconnect": first.received if held_at_disconnect else 0,
        "first_ack_ms": round(first_ack_s * 1000),
        "held_before_first_ack": held_before_first_ack,
        "received": holder.received,
        "peak_unacknowledged": holder.peak,
        "overshoot": max(0, holder.peak - receive_maximum),
        "drain_s": round(elapsed, 2),
    }


def main() -> int:
    """Run the bench; print the figures and write them to bench/results/."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, help="the Mosquitto to measure (default: the installed one)")
    parser.add_argument("--receive-maximum", type=int, default=2000)
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--ack-every-ms", type=float, default=50.0)
    parser.add_argument("--first-ack-ms", type=float, default=1000.0, help="hold everything this long first")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--idle-disconnect",
        action="store_true",
        help="the session goes offline holding nothing (default: holding a full unacknowledged window)",
    )
    args = parser.parse_args()
    version = ".".join(map(str, mosquitto_version(args.binary)))
    runs = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="rm-bench-") as folder:
            data = Path(folder)
            data.chmod(0o755)
            with start_mosquitto(data / "mosquitto", binary=args.binary) as server:
                figures = measure(
                    server.port,
                    receive_maximum=args.receive_maximum,
                    backlog=args.backlog,
                    ack_every_s=args.ack_every_ms / 1000,
                    first_ack_s=args.first_ack_ms / 1000,
                    held_at_disconnect=not args.idle_disconnect,
                )
        print(f"mosquitto {version} run {run + 1}: {figures}", flush=True)
        runs.append(figures)
    result = {
        "bench": "receive_maximum",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mosquitto": version,
        "runs": runs,
        "peak_unacknowledged_max": max(r["peak_unacknowledged"] for r in runs),
    }
    out = ROOT / "bench" / "results" / f"receive-maximum-{version}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
