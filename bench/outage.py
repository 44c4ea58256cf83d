"""Outage bench: a steady ingest rate with PostgreSQL stopped for a while, then restarted.

A paced publisher (paho, QoS 1, its own thread, drift-free schedule) sends `--rate` messages/s, one
sample of 4 readings each, round robin over `--devices` devices, through private Mosquitto, Redis and
PostgreSQL servers and `python -m bridge`. After `--before-s` seconds PostgreSQL is stopped for
`--outage-s` seconds, then restarted (`ServerProcess.restart()`); publishing goes on at the same rate
until the database holds everything published (at most `--after-s` seconds), then stops.

Every second: the bridge's and Mosquitto's RSS (/proc/<pid>/status VmRSS), the broker's stored and
dropped message counts ($SYS, refreshed every sys_interval = 10 s), the bridge's counters (Redis hash
`fleet:bridge:<client id>`) and the rows in `telemetry`. At the end every published (device, seq) is
checked in PostgreSQL: stored exactly once. Figures are printed and written to bench/results/.

    .venv/bin/python bench/outage.py --rate 2000 --outage-s 300
"""

from __future__ import annotations

import argparse
import contextlib
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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import psycopg
import redis
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from payloads import READINGS_PER_SAMPLE, truck_sample  # noqa: E402 - bench/payloads.py, beside this script
from servers import RECEIVE_MAXIMUM, progress, rss_mib, start_bridge, start_servers  # noqa: E402 - bench/servers.py, beside this script

BRIDGE_ID = "outage-bridge"
PUBLISHER_ID = "outage-publisher"
MONITOR_ID = "outage-sys-monitor"
# paho's packet ids wrap at 65535: more messages outstanding than that collide and are lost.
OUTSTANDING_MAX = 10_000
TICK_S = 0.01
SYS_STORED = "$SYS/broker/store/messages/count"
SYS_DROPPED = "$SYS/broker/publish/messages/dropped"
RSS_TARGET_MIB = 300.0
SERIES_EVERY_S = 10


def mqtt_host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").split(":")
    return host, int(port)


class Publisher(threading.Thread):
    """Publishes message n at start + n / rate (drift-free), with at most OUTSTANDING_MAX unacknowledged."""

    def __init__(self, url: str, rate: float, devices: int, seed: int) -> None:
        super().__init__(name="publisher", daemon=True)
        self.rate = rate
        self.devices = devices
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.published = 0  # publish() called
        self.acked = 0  # PUBACK received
        self.failed = 0  # PUBACK with a failure reason code
        self.max_lag_s = 0.0  # how far behind its schedule the publisher fell
        self.seqs = [0] * devices
        self.window = threading.Semaphore(OUTSTANDING_MAX)
        self.epoch = datetime.now(UTC) - timedelta(hours=1)
        host, port = mqtt_host_port(url)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=PUBLISHER_ID, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.connect(host, port, clean_start=True)
        self.client.loop_start()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: Any, props: Any) -> None:
        with self.lock:
            self.acked += 1
            if getattr(reason, "is_failure", False):
                self.failed += 1
        self.window.release()

    def _payload(self, device: int) -> tuple[str, bytes]:
        rng = self.rng
        seq = self.seqs[device]
        self.seqs[device] += 1
        sample = truck_sample(seq, self.epoch + timedelta(milliseconds=seq * 100), rng)
        return f"fleet/v1/bench-{device:05d}/telemetry", msgspec.json.encode(sample)

    def run(self) -> None:
        started = time.monotonic()
        n = 0
        while not self.stop_event.is_set():
            now = time.monotonic()
            due = int((now - started) * self.rate)
            self.max_lag_s = max(self.max_lag_s, (due - n) / self.rate)
            while n < due and not self.stop_event.is_set():
                if not self.window.acquire(timeout=0.5):
                    continue
                topic, payload = self._payload(n % self.devices)
                self.client.publish(topic, payload, qos=1)
                n += 1
                with self.lock:
                    self.published = n
            # sleep until the next message is due, measured from the start (no drift)
            wait = started + (n + 1) / self.rate - time.monotonic()
            if wait > 0:
                self.stop_event.wait(min(wait, TICK_S))

    def finish(self, timeout: float = 60.0) -> bool:
        """Stop publishing; wait for every PUBACK. True when all arrived."""
        self.stop_event.set()
        self.join(10)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.acked >= self.published:
                    break
            time.sleep(0.05)
        self.client.disconnect()
        self.client.loop_stop()
        with self.lock:
            return self.acked >= self.published


class SysMonitor:
    """Latest values of the broker's $SYS topics we watch."""

    def __init__(self, url: str) -> None:
        self.values: dict[str, int] = {}
        host, port = mqtt_host_port(url)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=MONITOR_ID, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda client, *args: client.subscribe([(SYS_STORED, 0), (SYS_DROPPED, 0)])
        self.client.connect(host, port, clean_start=True)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(ValueError):
            self.values[message.topic] = int(message.payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Sample:
    t: float
    phase: str
    published: int
    acked: int
    committed: int
    rows: int | None
    inflight: int
    received: int
    connects: int
    dropped_on_disconnect: int
    bridge_rss_mib: float | None
    broker_rss_mib: float | None
    broker_stored: int | None
    broker_dropped: int | None


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    phase_at: dict[str, float] = field(default_factory=dict)


def count_rows(database_url: str) -> int | None:
    try:
        with psycopg.connect(database_url, connect_timeout=1) as conn:
            row = conn.execute("SELECT count(*) FROM telemetry").fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return None


def verify(database_url: str, seqs: list[int]) -> dict[str, int]:
    """Compare the rows in telemetry with every published (device, seq)."""
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TEMP TABLE expected (device_id text, seq bigint)")
        with conn.cursor().copy("COPY expected (device_id, seq) FROM STDIN") as copy:
            for device, count in enumerate(seqs):
                name = f"bench-{device:05d}"
                for seq in range(count):
                    copy.write_row((name, seq))
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, seq)) FROM telemetry WHERE device_id LIKE 'bench-%'"
        ).fetchone()
        assert row is not None
        rows, distinct = int(row[0]), int(row[1])
        lost_row = conn.execute(
            "SELECT count(*) FROM expected e WHERE NOT EXISTS"
            " (SELECT 1 FROM telemetry t WHERE t.device_id = e.device_id AND t.seq = e.seq)"
        ).fetchone()
        unexpected_row = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT device_id, seq FROM telemetry) t WHERE NOT EXISTS"
            " (SELECT 1 FROM expected e WHERE e.device_id = t.device_id AND e.seq = t.seq)"
        ).fetchone()
        assert lost_row is not None
        assert unexpected_row is not None
    return {
        "expected": sum(seqs),
        "rows": rows,
        "distinct": distinct,
        "lost": int(lost_row[0]),
        "duplicated": rows - distinct,
        "unexpected": int(unexpected_row[0]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=2000.0, help="messages/s")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--before-s", type=float, default=20.0, help="steady ingest before the outage")
    parser.add_argument("--outage-s", type=float, default=300.0, help="PostgreSQL stopped this long")
    parser.add_argument("--after-s", type=float, default=300.0, help="max time to catch up after the restart")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="fb-outage-"))
    base.chmod(0o755)
    servers = []
    bridge: subprocess.Popen[bytes] | None = None
    publisher: Publisher | None = None
    monitor: SysMonitor | None = None
    try:
        mosquitto, redis_server, postgres = start_servers(base, servers)
        urls = {"mqtt": mosquitto.url, "redis": redis_server.url, "database": postgres.url}

        r = redis.Redis.from_url(urls["redis"], decode_responses=True)
        key = f"fleet:bridge:{BRIDGE_ID}"
        r.delete(key)
        bridge = start_bridge(urls, base, BRIDGE_ID)
        deadline = time.monotonic() + 30
        while r.hget(key, "connects") != "1":
            if time.monotonic() > deadline or bridge.poll() is not None:
                raise RuntimeError(f"the bridge did not connect: see {base / (BRIDGE_ID + '.log')}")
            time.sleep(0.05)
        time.sleep(1)  # let it subscribe

        monitor = SysMonitor(mosquitto.url)
        publisher = Publisher(mosquitto.url, args.rate, args.devices, args.seed)
        run = Run()
        progress(f"publishing {args.rate:.0f} msg/s from {args.devices} devices")
        t0 = time.monotonic()
        publisher.start()
        run.phase_at["before"] = 0.0
        phase = "before"
        restart_s: float | None = None
        caught_up_s: float | None = None
        rows_at_restart = 0
        last_report = 0.0
        next_tick = t0 + 1.0
        while True:
            now = time.monotonic()
            t = now - t0
            if phase == "before" and t >= args.before_s:
                progress("stopping PostgreSQL")
                postgres.stop()
                phase = "outage"
                run.phase_at["outage"] = time.monotonic() - t0
            elif phase == "outage" and t >= args.before_s + args.outage_s:
                progress("restarting PostgreSQL")
                postgres.restart()
                phase = "after"
                restart_s = time.monotonic() - t0
                run.phase_at["after"] = restart_s
                rows_at_restart = count_rows(postgres.url) or 0
            stats = r.hgetall(key)
            with publisher.lock:
                published, acked = publisher.published, publisher.acked
            rows = count_rows(postgres.url) if phase != "outage" else None
            sample = Sample(
                t=round(time.monotonic() - t0, 2),
                phase=phase,
                published=published,
                acked=acked,
                committed=int(stats.get("committed_messages", 0)),
                rows=rows,
                inflight=int(stats.get("inflight", 0)),
                received=int(stats.get("received", 0)),
                connects=int(stats.get("connects", 0)),
                dropped_on_disconnect=int(stats.get("dropped_on_disconnect", 0)),
                bridge_rss_mib=rss_mib(bridge.pid),
                broker_rss_mib=rss_mib(mosquitto.pid),
                broker_stored=monitor.values.get(SYS_STORED),
                broker_dropped=monitor.values.get(SYS_DROPPED),
            )
            run.samples.append(sample)
            if bridge.poll() is not None:
                raise RuntimeError(f"the bridge exited: see {base / (BRIDGE_ID + '.log')}")
            if phase == "after" and restart_s is not None:
                # Caught up: the database holds every message the broker had acknowledged one sample
                # (1 s) earlier. Publishing goes on, so "committed equals published" can only hold up to
                # what is in flight; in steady state before the outage the lag is well under 1 s.
                previous = run.samples[-2]
                if rows is not None and rows >= previous.acked and previous.t >= restart_s:
                    caught_up_s = sample.t - restart_s
                    progress(f"caught up {caught_up_s:.1f} s after the restart")
                    break
                if t - restart_s > args.after_s:
                    progress(f"not caught up within {args.after_s:.0f} s")
                    break
            if t - last_report >= 10:
                last_report = t
                progress(
                    f"t={sample.t:.0f}s {phase}: published {published}, acked {acked}, committed {sample.committed},"
                    f" rows {rows}, inflight {sample.inflight}, connects {sample.connects},"
                    f" dropped_on_disconnect {sample.dropped_on_disconnect},"
                    f" bridge RSS {sample.bridge_rss_mib or 0:.1f} MiB, broker RSS {sample.broker_rss_mib or 0:.1f} MiB,"
                    f" broker stored {sample.broker_stored}, dropped {sample.broker_dropped}, lag {publisher.max_lag_s:.2f}s"
                )
            next_tick += 1.0
            time.sleep(max(0.0, next_tick - time.monotonic()))

        progress("stopping the publisher")
        all_acked = publisher.finish()
        seqs = list(publisher.seqs)
        total = sum(seqs)
        drain_deadline = time.monotonic() + 60
        while time.monotonic() < drain_deadline and (count_rows(postgres.url) or 0) < total:
            time.sleep(0.2)
        time.sleep(1)  # $SYS and stats settle a little; the bridge still commits anything late
        progress("verifying every (device, seq) in PostgreSQL")
        check = verify(postgres.url, seqs)
        final_stats = r.hgetall(key)
        r.close()

        log_text = (base / f"{BRIDGE_ID}.log").read_text(errors="replace")
        reconnects = log_text.count("MQTT connection lost")
        outage_samples = [s for s in run.samples if s.phase == "outage"]
        bridge_rss = [s.bridge_rss_mib for s in run.samples if s.bridge_rss_mib is not None]
        broker_rss = [s.broker_rss_mib for s in run.samples if s.broker_rss_mib is not None]
        stored = [s.broker_stored for s in run.samples if s.broker_stored is not None]
        dropped = [s.broker_dropped for s in run.samples if s.broker_dropped is not None]
        rate_commit = rate_drain = None
        backlog_at_restart = None
        if caught_up_s is not None and restart_s is not None and caught_up_s > 0:
            end = next(s for s in reversed(run.samples) if s.rows is not None)
            rate_commit = ((end.rows or 0) - rows_at_restart) / caught_up_s
            restart_sample = next(s for s in run.samples if s.phase == "after")
            backlog_at_restart = restart_sample.acked - rows_at_restart
            rate_drain = backlog_at_restart / caught_up_s
        result: dict[str, Any] = {
            "benchmark": "outage",
            "at": datetime.now(UTC).isoformat(),
            "command": " ".join(sys.argv),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "setup": {
                "rate_msgs_per_s": args.rate,
                "devices": args.devices,
                "samples_per_message": 1,
                "readings_per_sample": READINGS_PER_SAMPLE,
                "before_s": args.before_s,
                "outage_s": args.outage_s,
                "after_max_s": args.after_s,
                "receive_maximum": RECEIVE_MAXIMUM,
                "publisher_outstanding_max": OUTSTANDING_MAX,
            },
            "published": total,
            "publisher_all_acked": all_acked,
            "publisher_failures": publisher.failed,
            "publisher_max_lag_s": round(publisher.max_lag_s, 3),
            "achieved_rate_msgs_per_s": round(total / max(1e-9, run.samples[-1].t), 1),
            "peak_bridge_rss_mib": round(max(bridge_rss), 1) if bridge_rss else None,
            "bridge_rss_during_outage_mib": {
                "min": round(min(s.bridge_rss_mib or 0 for s in outage_samples), 1) if outage_samples else None,
                "max": round(max(s.bridge_rss_mib or 0 for s in outage_samples), 1) if outage_samples else None,
            },
            "bridge_rss_target_mib": RSS_TARGET_MIB,
            "peak_broker_rss_mib": round(max(broker_rss), 1) if broker_rss else None,
            "peak_broker_stored": max(stored) if stored else None,
            "broker_dropped": max(dropped) if dropped else None,
            "peak_bridge_inflight": int(final_stats.get("inflight_peak", 0)),
            "peak_inflight_during_outage": max((s.inflight for s in outage_samples), default=None),
            "backlog_at_restart": backlog_at_restart,
            "catch_up_s": round(caught_up_s, 1) if caught_up_s is not None else None,
            "catch_up_commit_rate_msgs_per_s": round(rate_commit) if rate_commit is not None else None,
            "catch_up_net_drain_rate_msgs_per_s": round(rate_drain) if rate_drain is not None else None,
            "bridge_connects": int(final_stats.get("connects", 0)),
            "bridge_reconnects_logged": reconnects,
            "bridge_dropped_on_disconnect": int(final_stats.get("dropped_on_disconnect", 0)),
            "bridge_sink_retries": int(final_stats.get("sink_retries", 0)),
            "bridge_received": int(final_stats.get("received", 0)),
            "bridge_committed_messages": int(final_stats.get("committed_messages", 0)),
            "check": check,
            "phase_at_s": {k: round(v, 1) for k, v in run.phase_at.items()},
            "series": [asdict(s) for s in run.samples if int(s.t) % SERIES_EVERY_S == 0 or s is run.samples[-1]],
        }
        width = 34
        rows_out = [
            ("published (acked by broker)", f"{total:,} ({'all' if all_acked else 'NOT all'} acked)"),
            ("achieved rate", f"{result['achieved_rate_msgs_per_s']:,} msg/s (max lag {publisher.max_lag_s:.2f} s)"),
            (
                "peak bridge RSS",
                f"{result['peak_bridge_rss_mib']} MiB (target ≤ {RSS_TARGET_MIB:.0f}; outage"
                f" {result['bridge_rss_during_outage_mib']['min']}–{result['bridge_rss_during_outage_mib']['max']})",
            ),
            ("peak broker RSS", f"{result['peak_broker_rss_mib']} MiB"),
            ("peak broker stored ($SYS)", f"{result['peak_broker_stored']}"),
            ("broker dropped ($SYS)", f"{result['broker_dropped']} (must be 0)"),
            (
                "peak bridge inflight",
                f"{result['peak_bridge_inflight']} (outage {result['peak_inflight_during_outage']})",
            ),
            ("backlog at restart", f"{backlog_at_restart}"),
            ("catch-up time", f"{result['catch_up_s']} s"),
            (
                "catch-up rate",
                f"{result['catch_up_commit_rate_msgs_per_s']} msg/s committed"
                f" ({result['catch_up_net_drain_rate_msgs_per_s']} msg/s net of new arrivals)",
            ),
            (
                "bridge connects / reconnects",
                f"{result['bridge_connects']} / {reconnects} (dropped_on_disconnect {result['bridge_dropped_on_disconnect']})",
            ),
            ("rows / distinct", f"{check['rows']:,} / {check['distinct']:,}"),
            ("lost", f"{check['lost']}"),
            ("duplicated", f"{check['duplicated']}"),
            ("unexpected", f"{check['unexpected']}"),
        ]
        for label, value in rows_out:
            print(f"{label:<{width}} {value}")
        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S}"
        out = ROOT / "bench" / "results" / f"outage-{stamp}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        progress(f"wrote {out.relative_to(ROOT)}")
        shutil.copy(base / f"{BRIDGE_ID}.log", ROOT / "bench" / "results" / f"outage-{stamp}-bridge.log")
    finally:
        if publisher is not None and publisher.is_alive():
            publisher.stop_event.set()
        if monitor is not None:
            monitor.close()
        if bridge is not None and bridge.poll() is None:
            bridge.terminate()
            bridge.wait(30)
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
