"""Fuzz the bridge's decode path: a million hostile and valid payloads in-process, then a share end to end.

Part 1 (in-process, no servers): `bridge.decode.decode_message` on `--payloads` generated messages, a mix
of valid samples and batches (JSON and MessagePack), batches mixing valid and spoiled samples, mutated
valid payloads (bit flips, truncation, splices, inserted and deleted bytes, hostile tokens), random JSON
values, random bytes, hostile topics and the files of `tests/corpus/telemetry/`. An oracle checks each
result: nothing raises; every rejection has a reason; every accepted sample obeys docs/topics.md
(`tests.corpus.violation`); valid messages are accepted whole; in a mixed batch exactly the spoiled
samples are refused; corpus files have their indexed outcome.

Part 2 (end to end): `--e2e` messages of the same mix through private Mosquitto, Redis, PostgreSQL and
`python -m bridge`, each message on a topic of its own; afterwards every sample the decoder accepts is
in `telemetry` and every refusal in `rejected_messages`, one row each.

Any exception, oracle failure or missing row is printed with its payload and the script exits 1.
Results are printed and written to bench/results/fuzz-<timestamp>.json.

    .venv/bin/python bench/fuzz.py                          # 1,000,000 in-process, 20,000 end to end
    .venv/bin/python bench/fuzz.py --payloads 100000 --e2e 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import psycopg
import redis
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from servers import start_servers  # noqa: E402 - bench/servers.py, beside this script

from bridge.decode import Decoded, decode_message  # noqa: E402
from bridge.message import RawMessage  # noqa: E402
from models.telemetry import KNOWN_METRICS, Limits  # noqa: E402
from models.topics import is_device_id  # noqa: E402
from tests.corpus import CORPUS_NOW, Case, Outcome, load_cases, violation  # noqa: E402

MSGPACK = "application/msgpack"
LIMITS = Limits()
BRIDGE_ID = "fuzz-bridge"
OUTSTANDING_MAX = 2000
SHOW_MAX = 5  # failures printed in full per kind
STATS_FIELDS = ("received", "committed_messages", "inserted_rows", "rejected", "refused_by_database", "batches")
KNOWN = list(KNOWN_METRICS)
HOSTILE_NUMBERS = [
    b"1e999", b"-1e999", b"NaN", b"Infinity", b"-Infinity", b"18446744073709551616", b"9223372036854775808",
    b"-9223372036854775809", b"-0", b"1e-400", b"-1", b"0.5", b"9" * 400, b"true", b"null", b'"1"', b"[]", b"{}",
]  # fmt: skip
HOSTILE_STRINGS = [
    b'""', b'"\\u0000"', b'"\\ud800"', b'"\xff\xfe"', b'"2026-02-30T00:00:00Z"', b'"9999-12-31T23:59:59Z"',
    b'"0001-01-01T00:00:00+01:00"', b'"2026-11-25T12:00:00"', b'"fuel\\n"', b'"samples"', b'"F\xc3\xbcel"',
    b"123", b"null", b'"' + b"x" * 5000 + b'"', b"[" * 3000 + b"]" * 3000,
]  # fmt: skip
TOPIC_JUNK = ["+", "#", "/", "\x00", "\n", "\u00fc", " ", "\u200b", "$", "..", "\U0001f69b", "\udc80", "\x7f"]
NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


@dataclass(slots=True)
class Item:
    """One generated message and what the oracle knows of it."""

    kind: str
    topic: str
    payload: bytes
    content_type: str | None = None
    samples: int = -1  # valid samples in it, when known (-1: unknown)
    spoiled: list[int] = field(default_factory=list)  # indexes of the samples spoiled on purpose
    case: Case | None = None


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Fuzzer:
    """Generates the mix; `now` anchors the valid timestamps (well inside the accepted window)."""

    def __init__(self, seed: int, now: datetime, *, publishable: bool = False) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.publishable = publishable  # only what Mosquitto accepts and delivers on fleet/v1/+/telemetry
        self.corpus = [c for c in load_cases() if not publishable or (c.mqtt and c.topic is None)]
        self.seq = 0
        self.pool: list[bytes] = []  # recent valid JSON payloads, material for mutations
        self.kinds: list[tuple[str, Callable[[], Item]]] = [
            ("valid-json", lambda: self.valid(1, msgpack=False)),
            ("valid-msgpack", lambda: self.valid(1, msgpack=True)),
            ("valid-batch-json", lambda: self.valid(self.rng.randint(2, 20), msgpack=False)),
            ("valid-batch-msgpack", lambda: self.valid(self.rng.randint(2, 20), msgpack=True)),
            ("mixed-batch", self.mixed_batch),
            ("bit-flip", lambda: self.mutated("bit-flip", self.flip)),
            ("truncated", lambda: self.mutated("truncated", self.truncate)),
            ("spliced", lambda: self.mutated("spliced", self.splice)),
            ("bytes-in-out", lambda: self.mutated("bytes-in-out", self.insert_delete)),
            ("hostile-token", lambda: self.mutated("hostile-token", self.token)),
            ("random-json", self.random_json),
            ("random-bytes", self.random_bytes),
            ("corpus", self.corpus_case),
            ("hostile-topic", self.hostile_topic),
        ]
        self.weights = [15, 5, 5, 2, 6, 14, 8, 8, 5, 12, 10, 2, 3, 5]

    def items(self, count: int) -> Iterator[Item]:
        choices = self.rng.choices(range(len(self.kinds)), self.weights, k=count)
        for index in choices:
            yield self.kinds[index][1]()

    # --- valid material ---------------------------------------------------------------------------

    def sample(self) -> dict[str, Any]:
        r = self.rng
        self.seq += 1
        out: dict[str, Any] = {"seq": self.seq, "ts": self.now - timedelta(seconds=r.uniform(60, 86_400))}
        if r.random() < 0.1:
            out["boot"] = r.randrange(10)
        if r.random() < 0.8:
            pos: dict[str, float] = {"lat": r.uniform(-90, 90), "lon": r.uniform(-180, 180)}
            if r.random() < 0.5:
                pos.update(speed=r.uniform(0, 500), heading=r.uniform(0, 359.9), alt=r.uniform(-1000, 20000))
            if r.random() < 0.2:
                pos["accuracy"] = r.uniform(0, 100_000)
            out["pos"] = pos
        metrics: dict[str, float] = {}
        for name in r.sample(KNOWN, r.randint(0, 5)):
            spec = KNOWN_METRICS[name]
            metrics[name] = r.uniform(spec.low, spec.high)
        if r.random() < 0.3:
            metrics[f"x_{r.randrange(100)}"] = r.uniform(-1e12, 1e12)
        if metrics:
            out["metrics"] = metrics
        if r.random() < 0.15:
            low, avg, high = sorted(r.uniform(0, 100) for _ in range(3))
            out["agg"] = {"vibration": {"min": low, "max": high, "avg": avg, "count": r.randint(1, 1000)}}
        if r.random() < 0.3:
            out["quality"] = r.randint(0, 100)
        if r.random() < 0.05:
            out["firmware"] = {"version": "9.9", "features": [1, 2, {"x": None}]}  # unknown: ignored
        return out

    def topic(self) -> str:
        return f"fleet/v1/fz-{self.rng.randrange(1000):04d}/telemetry"

    def valid(self, count: int, *, msgpack: bool) -> Item:
        samples = [self.sample() for _ in range(count)]
        body: Any = samples[0] if count == 1 and self.rng.random() < 0.8 else {"samples": samples}
        payload = msgspec.msgpack.encode(body) if msgpack else msgspec.json.encode(body)
        if not msgpack:
            self.pool.append(payload)
            if len(self.pool) > 2000:
                del self.pool[: len(self.pool) // 2]
        kind = f"valid{'-batch' if count > 1 else ''}-{'msgpack' if msgpack else 'json'}"
        return Item(kind, self.topic(), payload, MSGPACK if msgpack else None, samples=count)

    def spoil(self, sample: dict[str, Any], msgpack: bool) -> Any:
        r = self.rng
        choice = r.randrange(12)
        if choice == 0:
            return {**sample, "seq": r.choice([-1, 2**63, 2**64 - 1, "7", None, True])}
        if choice == 1:
            return {**sample, "ts": self.now + timedelta(days=r.uniform(1, 1000))}
        if choice == 2:
            return {**sample, "ts": self.now - timedelta(days=r.uniform(31, 10_000))}
        if choice == 3:
            return {**sample, "metrics": {"fuel": r.choice([100.5, -1.0, 1e300])}}
        if choice == 4:
            return {**sample, "pos": {"lat": r.choice([90.5, -91.0, 1e308]), "lon": 0.0}}
        if choice == 5:
            return {**sample, "metrics": {r.choice(["Fuel", "fuel\n", "f\u00fcel", "", "1x", "a" * 33]): 1.0}}
        if choice == 6:
            return {**sample, "agg": {"flow": {"min": 5.0, "max": 1.0, "avg": 3.0, "count": 2}}}
        if choice == 7:
            return {k: v for k, v in sample.items() if k != "ts"}
        if choice == 8:
            return {**sample, "quality": r.choice([101, -1, 50.5])}
        if choice == 9:
            return {**sample, "metrics": {"rpm": r.choice([float("nan"), float("inf"), -float("inf")])}}
        if choice == 10:
            return {**sample, "ts": r.choice(["2026-02-30T00:00:00Z", "2026-11-25T12:00:00", "", "now"])}
        return r.choice([None, 5, "sample", [1, 2], []])

    def mixed_batch(self) -> Item:
        msgpack = self.rng.random() < 0.3
        body = []
        spoiled = []
        for index in range(self.rng.randint(2, 20)):
            sample = self.sample()
            if self.rng.random() < 0.35:
                body.append(self.spoil(sample, msgpack))
                spoiled.append(index)
            else:
                body.append(sample)
        payload = msgspec.msgpack.encode({"samples": body}) if msgpack else msgspec.json.encode({"samples": body})
        return Item("mixed-batch", self.topic(), payload, MSGPACK if msgpack else None, len(body), spoiled)

    # --- mutations of valid payloads -----------------------------------------------------------------

    def base(self) -> bytes:
        if len(self.pool) < 50 or self.rng.random() < 0.1:
            self.valid(self.rng.choice([1, 1, 1, 5]), msgpack=False)
        return self.rng.choice(self.pool)

    def mutated(self, kind: str, mutate: Callable[[bytes], bytes]) -> Item:
        msgpack = self.rng.random() < 0.2
        if msgpack:
            base = msgspec.msgpack.encode(msgspec.json.decode(self.base()))
            return Item(kind, self.topic(), mutate(base), MSGPACK)
        return Item(kind, self.topic(), mutate(self.base()))

    def flip(self, data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.randint(1, 4)):
            at = self.rng.randrange(len(out))
            out[at] ^= 1 << self.rng.randrange(8)
        return bytes(out)

    def truncate(self, data: bytes) -> bytes:
        return data[: self.rng.randrange(len(data))]

    def splice(self, data: bytes) -> bytes:
        other = self.rng.choice(self.pool)
        return data[: self.rng.randrange(len(data) + 1)] + other[self.rng.randrange(len(other) + 1) :]

    def insert_delete(self, data: bytes) -> bytes:
        at = self.rng.randrange(len(data) + 1)
        if self.rng.random() < 0.5:
            junk = self.rng.choice([b"\x00", b"\xff", b"{", b"}", b"[", b",", b'"', b"\\", b"\xc3", b"\xed\xa0\x80"])
            return data[:at] + junk * self.rng.randint(1, 3) + data[at:]
        return data[:at] + data[at + self.rng.randint(1, 16) :]

    def token(self, data: bytes) -> bytes:
        pattern, replacements = (NUMBER, HOSTILE_NUMBERS) if self.rng.random() < 0.5 else (STRING, HOSTILE_STRINGS)
        matches = list(pattern.finditer(data))
        if not matches:
            return data
        found = self.rng.choice(matches)
        return data[: found.start()] + self.rng.choice(replacements) + data[found.end() :]

    # --- everything else -------------------------------------------------------------------------------

    def json_value(self, depth: int = 0) -> Any:
        r = self.rng
        pick = r.randrange(10 if depth < 4 else 6)
        if pick == 0:
            return None
        if pick == 1:
            return r.choice([True, False])
        if pick == 2:
            return r.choice([0, -1, 2**63, 2**64 + 5, r.randint(-(10**6), 10**6)])
        if pick == 3:
            return r.choice([0.5, -0.0, 1e308, 5e-324, float("nan"), float("inf"), r.uniform(-1e6, 1e6)])
        if pick in (4, 5):
            return r.choice(["", "seq", "ts", "2026-11-25T11:00:00Z", "\u0000", "\ud800", "\U0001f69b", "x" * 50])
        if pick in (6, 7):
            return [self.json_value(depth + 1) for _ in range(r.randint(0, 4))]
        keys = ["seq", "ts", "boot", "pos", "metrics", "agg", "samples", "quality", "lat", "lon", "fuel", "x"]
        return {r.choice(keys): self.json_value(depth + 1) for _ in range(r.randint(0, 5))}

    def random_json(self) -> Item:
        value = self.json_value()
        if self.rng.random() < 0.02:
            depth = self.rng.choice([500, 2000, 20_000])
            return Item("random-json", self.topic(), b"[" * depth + b"]" * depth)
        if self.rng.random() < 0.3:
            try:
                return Item("random-json", self.topic(), msgspec.msgpack.encode(value), MSGPACK)
            except (OverflowError, UnicodeEncodeError):
                pass  # an integer or a lone surrogate MessagePack cannot carry: send it as JSON
        return Item("random-json", self.topic(), json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass"))

    def random_bytes(self) -> Item:
        payload = self.rng.randbytes(self.rng.choice([0, 1, 8, 64, 512]))
        return Item("random-bytes", self.topic(), payload, MSGPACK if self.rng.random() < 0.5 else None)

    def corpus_case(self) -> Item:
        case = self.rng.choice(self.corpus)
        topic = case.topic if case.topic is not None else self.topic()
        return Item("corpus", topic, case.payload, case.content_type, case=case)

    def hostile_topic(self) -> Item:
        r = self.rng
        pick = r.randrange(5)
        if pick == 0:
            device = "".join(r.choice("abcXYZ019_.-") for _ in range(r.randint(0, 70)))
        elif pick == 1:
            device = f"fz{r.randrange(1000)}"
            at = r.randrange(len(device) + 1)
            device = device[:at] + r.choice(TOPIC_JUNK) + device[at:]
        elif pick == 2:
            device = "".join(chr(r.randrange(0x20, 0x3000)) for _ in range(r.randint(1, 20)))
        elif pick == 3:
            device = "d" * r.choice([64, 65, 3000])
        else:
            device = "fz-" + str(r.randrange(1000))
        kind = r.choice(["telemetry"] * 8 + ["events", "telemetry/", "cmd/ack", ""])
        sample = self.sample()
        return Item("hostile-topic", f"fleet/v1/{device}/{kind}", msgspec.json.encode(sample))


# --- the oracle ---------------------------------------------------------------------------------------


def first_words(reason: str) -> str:
    words = re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", reason.split(" - at ", maxsplit=1)[0]).split()
    return " ".join(words[:6])


def check(item: Item, decoded: Decoded, now: datetime, limits: Limits) -> str | None:
    """What is wrong with `decoded` for `item`, or None."""
    for rejection in decoded.rejections:
        if not rejection.reason.strip():
            return "a rejection without a reason"
    if decoded.rows and (decoded.device_id is None or not is_device_id(decoded.device_id)):
        return f"rows stored for device id {decoded.device_id!r}"
    for sample in decoded.samples:
        broken = violation(sample, now=now, limits=limits)
        if broken is not None:
            return f"accepted sample breaks a rule: {broken}"
    indexes = [r.index for r in decoded.rejections]
    if item.case is not None:
        case = item.case
        if case.outcome is Outcome.REJECTED_WHOLE and indexes != [-1]:
            return f"corpus {case.name}: expected rejected whole, got {indexes}"
        if case.outcome is Outcome.SAMPLE_REJECTED and indexes != list(case.rejected):
            return f"corpus {case.name}: expected rejections {list(case.rejected)}, got {indexes}"
        if case.outcome is Outcome.ACCEPTED and (indexes or len(decoded.rows) != case.accepted):
            return f"corpus {case.name}: expected {case.accepted} accepted, got {len(decoded.rows)} and {indexes}"
        return None
    if item.samples >= 0:
        if indexes != item.spoiled:
            return f"expected rejections at {item.spoiled}, got {[(r.index, r.reason) for r in decoded.rejections]}"
        if len(decoded.rows) != item.samples - len(item.spoiled):
            return f"expected {item.samples - len(item.spoiled)} samples accepted, got {len(decoded.rows)}"
    return None


@dataclass(slots=True)
class Tally:
    """Counts of one run."""

    messages: int = 0
    accepted_samples: int = 0
    sample_rejections: int = 0
    message_rejections: int = 0
    crashes: int = 0
    oracle_failures: int = 0
    decode_s: float = 0.0
    bytes: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    shown: Counter[str] = field(default_factory=Counter)


def show(tally: Tally, what: str, item: Item, detail: str) -> None:
    tally.shown[what] += 1
    if tally.shown[what] <= SHOW_MAX:
        print(f"{what.upper()} [{item.kind}] topic={item.topic[:120]!r} content_type={item.content_type}", flush=True)
        print(f"  payload ({len(item.payload)} bytes): {item.payload[:300]!r}", flush=True)
        print(f"  {detail}", flush=True)


def run_in_process(count: int, seed: int, chunk: int) -> Tally:
    now = datetime.now(UTC)
    fuzzer = Fuzzer(seed, now)
    tally = Tally()
    generate_s = 0.0
    items = fuzzer.items(count)
    done = 0
    last_report = time.perf_counter()
    while done < count:
        started = time.perf_counter()
        batch = [next(items) for _ in range(min(chunk, count - done))]
        generate_s += time.perf_counter() - started
        results: list[Decoded | BaseException] = []
        started = time.perf_counter()
        for item in batch:
            clock = CORPUS_NOW if item.case is not None else now
            try:
                results.append(
                    decode_message(
                        RawMessage(item.topic, item.payload, item.content_type, clock), now=clock, limits=LIMITS
                    )
                )
            except Exception as exc:  # every escape is a crash, to count and show
                results.append(exc)
        tally.decode_s += time.perf_counter() - started
        for item, result in zip(batch, results, strict=True):
            tally.messages += 1
            tally.bytes += len(item.payload)
            tally.kinds[item.kind] += 1
            if isinstance(result, BaseException):
                tally.crashes += 1
                show(tally, "crash", item, "".join(traceback.format_exception(result)).strip())
                continue
            tally.accepted_samples += len(result.rows)
            for rejection in result.rejections:
                if rejection.index < 0:
                    tally.message_rejections += 1
                else:
                    tally.sample_rejections += 1
                tally.reasons[first_words(rejection.reason)] += 1
            problem = check(item, result, CORPUS_NOW if item.case is not None else now, LIMITS)
            if problem is not None:
                tally.oracle_failures += 1
                show(tally, "oracle failure", item, problem)
        done += len(batch)
        if time.perf_counter() - last_report > 10:
            last_report = time.perf_counter()
            progress(f"in-process: {done} of {count}")
    progress(f"in-process: generated in {generate_s:.1f} s, decoded in {tally.decode_s:.1f} s")
    return tally


# --- end to end -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Expected:
    """What one published message must leave in the database, as the decoder says at both ends of the run."""

    device_id: str | None
    rows: int
    refusals: Counter[tuple[str, int]]
    clock_dependent: bool = False


def expect(item: Item, before: datetime, after: datetime) -> Expected:
    results = []
    for clock in (before, after):
        decoded = decode_message(
            RawMessage(item.topic, item.payload, item.content_type, clock), now=clock, limits=LIMITS
        )
        keys = {(s.ts, s.boot, s.seq) for s in decoded.samples}  # telemetry's key is (device_id, ts, boot, seq)
        refusals = Counter((r.topic, r.index) for r in decoded.rejections)
        results.append(Expected(decoded.device_id if decoded.rows else None, len(keys), refusals))
    first, second = results
    first.clock_dependent = (first.rows, first.refusals) != (second.rows, second.refusals)
    return first


def refused_by_mosquitto(char: str) -> bool:
    """Characters Mosquitto refuses in a topic (or that would add a level), so never published."""
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF) or char in "+#/"


def e2e_items(count: int, seed: int, now: datetime) -> list[Item]:
    """The mix again, each message on a topic of its own (so nothing is deduplicated across messages)."""
    fuzzer = Fuzzer(seed + 1, now, publishable=True)
    out = []
    for n, item in enumerate(fuzzer.items(count)):
        if item.kind == "hostile-topic":
            device = "".join("_" if refused_by_mosquitto(c) else c for c in item.topic.split("/")[2])
            item.topic = f"fleet/v1/{device}~{n}/telemetry"  # outside the grammar, but Mosquitto takes it
        else:
            item.topic = f"fleet/v1/e{n:06d}/telemetry"
        out.append(item)
    return out


def publish_all(url: str, items: list[Item]) -> float:
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fuzz-publisher", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(OUTSTANDING_MAX)
    client.max_queued_messages_set(0)
    window = threading.Semaphore(OUTSTANDING_MAX)
    client.on_publish = lambda *args: window.release()
    client.connect(host, int(port))
    client.loop_start()
    started = time.perf_counter()
    for item in items:
        window.acquire()
        properties = None
        if item.content_type is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ContentType = item.content_type
        info = client.publish(item.topic, item.payload, qos=1, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish to {item.topic!r} failed: {mqtt.error_string(info.rc)}")
    for _ in range(OUTSTANDING_MAX):
        window.acquire()
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return len(items) / elapsed


def run_e2e(count: int, seed: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="fb-fuzz-"))
    base.chmod(0o755)
    servers = []
    bridge = None
    try:
        mosquitto, redis_server, postgres = start_servers(base, servers)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETBRIDGE_")}
        env.update(
            {
                "FLEETBRIDGE_MQTT_URL": mosquitto.url,
                "FLEETBRIDGE_MQTT_CLIENT_ID": BRIDGE_ID,
                "FLEETBRIDGE_REDIS_URL": redis_server.url,
                "FLEETBRIDGE_DATABASE_URL": postgres.url,
                "FLEETBRIDGE_BRIDGE_STATS_INTERVAL_MS": "100",
            }
        )
        log_path = base / "bridge.log"
        with log_path.open("wb") as log:
            bridge = subprocess.Popen(
                [sys.executable, "-m", "bridge"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        stats_client = redis.Redis.from_url(redis_server.url, decode_responses=True)

        def stats() -> dict[str, str]:
            return stats_client.hgetall(f"fleet:bridge:{BRIDGE_ID}")  # type: ignore[return-value]

        deadline = time.monotonic() + 30
        while stats().get("connects", "0") == "0":
            if bridge.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bridge did not connect: see {log_path}")
            time.sleep(0.05)

        before = datetime.now(UTC)
        items = e2e_items(count, seed, before)
        progress(f"end to end: publishing {len(items)} messages")
        publish_rate = publish_all(mosquitto.url, items)
        deadline = time.monotonic() + 300
        while int(stats().get("committed_messages", 0)) < len(items):
            if bridge.poll() is not None:
                raise RuntimeError(f"the bridge exited: see {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {stats().get('committed_messages')} of {len(items)} committed")
            time.sleep(0.1)
        time.sleep(0.3)  # the last stats interval
        final = stats()
        after = datetime.now(UTC)
        bridge.terminate()
        bridge.wait(30)
        stats_client.close()

        expected = [expect(item, before, after) for item in items]
        with psycopg.connect(postgres.url) as conn:
            stored: Counter[str] = Counter(
                dict(conn.execute("SELECT device_id, count(*) FROM telemetry GROUP BY device_id").fetchall())
            )
            dead = conn.execute("SELECT topic, sample_index, reason FROM rejected_messages").fetchall()
        refused = Counter((topic, index) for topic, index, _ in dead)
        result: dict[str, Any] = {
            "messages": len(items),
            "publish_msgs_per_s": round(publish_rate),
            "clock_dependent_skipped": sum(e.clock_dependent for e in expected),
            "bridge_stats": {name: int(final.get(name, 0)) for name in STATS_FIELDS},
            "dead_letters_without_reason": sum(1 for *_, reason in dead if not reason.strip()),
        }
        want_rows = want_refusals = found_rows = found_refusals = 0
        missing: list[str] = []
        for item, exp in zip(items, expected, strict=True):
            if exp.clock_dependent:
                continue
            want_rows += exp.rows
            want_refusals += sum(exp.refusals.values())
            got_rows = stored.get(exp.device_id, 0) if exp.device_id is not None else 0
            got = Counter({key: refused[key] for key in exp.refusals})
            found_rows += min(got_rows, exp.rows)
            found_refusals += sum(min(got[key], n) for key, n in exp.refusals.items())
            if got_rows != exp.rows or got != exp.refusals:
                missing.append(
                    f"[{item.kind}] {item.topic[:80]!r} {item.payload[:200]!r}: rows {got_rows}/{exp.rows},"
                    f" refusals {dict(got)}/{dict(exp.refusals)}"
                )
        result.update(
            expected_samples_stored=want_rows,
            samples_stored=found_rows,
            expected_refusals=want_refusals,
            refusals_stored=found_refusals,
            telemetry_rows_total=sum(stored.values()),
            rejected_rows_total=len(dead),
            mismatches=len(missing),
        )
        for line in missing[:SHOW_MAX]:
            print(f"E2E MISMATCH {line}", flush=True)
        return result
    finally:
        if bridge is not None and bridge.poll() is None:
            bridge.kill()
            bridge.wait(10)
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payloads", type=int, default=1_000_000, help="messages decoded in-process")
    parser.add_argument("--e2e", type=int, default=20_000, help="messages through the real stack (0: skip)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=10_000, help="messages generated, then decoded, at a time")
    args = parser.parse_args()

    progress(f"in-process: {args.payloads} messages, seed {args.seed}")
    tally = run_in_process(args.payloads, args.seed, args.chunk)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    in_process = {
        "messages": tally.messages,
        "mean_payload_bytes": round(tally.bytes / max(tally.messages, 1)),
        "payloads_per_s": round(tally.messages / tally.decode_s) if tally.decode_s else None,
        "decode_s": round(tally.decode_s, 2),
        "accepted_samples": tally.accepted_samples,
        "sample_rejections": tally.sample_rejections,
        "message_rejections": tally.message_rejections,
        "crashes": tally.crashes,
        "oracle_failures": tally.oracle_failures,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "mix": dict(tally.kinds.most_common()),
        "top_reasons": dict(tally.reasons.most_common(15)),
    }
    print(json.dumps({"in_process": in_process}, indent=2, ensure_ascii=False), flush=True)
    e2e = run_e2e(args.e2e, args.seed) if args.e2e else None
    if e2e is not None:
        print(json.dumps({"end_to_end": e2e}, indent=2), flush=True)

    result = {
        "benchmark": "fuzz",
        "at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "msgspec": msgspec.__version__},
        "seed": args.seed,
        "in_process": in_process,
        "end_to_end": e2e,
    }
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S}"
    out = ROOT / "bench" / "results" / f"fuzz-{stamp}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    progress(f"wrote {out.relative_to(ROOT)}")
    failed = tally.crashes or tally.oracle_failures
    if e2e is not None:
        failed = failed or e2e["mismatches"] or e2e["dead_letters_without_reason"]
        failed = failed or e2e["bridge_stats"]["refused_by_database"]
    if failed:
        print("FAILED: crashes, oracle failures or end-to-end mismatches above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
