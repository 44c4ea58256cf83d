"""Wire the bridge's stages together and run them: the one place that knows all of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec
import psycopg
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.typing import EncodableT

from bridge import decode as decode_stage
from bridge import fanout
from bridge.announce import announce_events
from bridge.batch import Batch, Batcher
from bridge.cache import RedisStateCache, StateCache, States
from bridge.decode import Decoded
from bridge.errors import CacheUnavailableError, SinkUnavailableError
from bridge.message import Acknowledgement, RawMessage
from bridge.rebuild import REBUILD_CHECK_INTERVAL_S, StateRebuild
from bridge.sink import PostgresTelemetrySink, WriteReport
from bridge.source import MqttSource
from bridge.statestore import DeviceStateWriter
from bridge.stats import BridgeStats, stats_key
from config import Settings
from models import partitions
from models.events import StoredEvent
from models.state import state_from_fields
from models.telemetry import Limits
from models.topics import TopicKind, device_topic, shared, wildcard

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()

POST_COMMIT_QUEUE_BATCHES: Final = 8  # committed batches waiting for Redis and replies; bounds memory
MAINTENANCE_INTERVAL_S: Final = 3600.0
STATS_LOG_INTERVAL_S: Final = 10.0
PRESENCE_SWEEP_INTERVAL_S: Final = 5.0
STATE_REPUBLISH_INTERVAL_S: Final = 1.0
STATUS_SUFFIX: Final = "/" + TopicKind.STATUS.value
ACCEPTED: Final = Acknowledgement()
# At stop, how long the last batches may take to commit (and their state to reach Redis) before the
# bridge gives up on them: uncommitted messages were never acknowledged, so the broker delivers them
# again to the next instance. A stop therefore never waits on a server that is down.
STOP_DRAIN_S: Final = 5.0
STOP_STEP_S: Final = 2.0  # each later step of a stop (MQTT disconnect, closing connections), at most


@dataclass(frozen=True, slots=True)
class Committed:
    """A committed batch on its way to Redis and to the devices' reply topics."""

    decoded: list[Decoded]
    committed_at: datetime
    revived: list[decode_stage.PresenceUpdate] = field(default_factory=list)  # online again by its telemetry
    new_events: list[tuple[str, StoredEvent]] = field(default_factory=list)  # events stored for the first time


class Bridge:
    """The pipeline: handler -> batcher -> sink (COMMIT) -> acks; then cache and replies."""

    def __init__(
        self,
        settings: Settings,
        *,
        source: MqttSource,
        sink: PostgresTelemetrySink,
        cache: StateCache,
        redis: aioredis.Redis | None = None,
        rebuild: StateRebuild | None = None,
        device_state: DeviceStateWriter | None = None,
    ) -> None:
        self._settings = settings
        self._rebuild = rebuild
        self._device_state = device_state
        self._source = source
        self._sink = sink
        self._cache = cache
        self._redis = redis
        bridge = settings.bridge
        self._limits = Limits(
            max_payload_bytes=bridge.max_payload_bytes,
            max_samples_per_message=bridge.max_samples_per_message,
            future_skew=timedelta(seconds=bridge.future_skew_s),
            max_age=timedelta(days=settings.database.retention_days),
        )
        self._batcher = Batcher(max_messages=bridge.batch_max_messages, max_age_s=bridge.batch_max_age_ms / 1000)
        self._wakeup = asyncio.Event()
        self._committed: asyncio.Queue[Committed | None] = asyncio.Queue(POST_COMMIT_QUEUE_BATCHES)
        self.stats = BridgeStats()
        self._state_pending: States = {}
        self._committing: Batch | None = None  # the batch `_commit` is writing, if any

    async def handle(self, message: RawMessage) -> Acknowledgement:
        """Take one message; answer with its PUBACK reason once the COMMIT holding it is done.

        Refused whole (nothing of it stored, its dead letter committed): 0x99 Payload format invalid with
        the reason. Partly refused: success, since what was valid is stored; the per-sample reasons go
        to `rejected`. Mosquitto does not pass this PUBACK on to the device (its PUBACK to a publisher is
        its own): the reason is for the broker's log and for brokers that relay it (docs/topics.md).
        """
        stats = self.stats
        stats.received += 1
        stats.inflight += 1
        stats.inflight_peak = max(stats.inflight_peak, stats.inflight)
        try:
            decoded = decode_stage.decode_message(message, now=datetime.now(UTC), limits=self._limits)
            done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            if self._batcher.add(decoded, done, time.monotonic(), message.generation) or self._batcher.pending() == 1:
                self._wakeup.set()
            refused_by_database = await done
        finally:
            self.stats.inflight -= 1
        if refused_by_database is not None:
            return Acknowledgement(decode_stage.PAYLOAD_FORMAT_INVALID, refused_by_database)
        if decoded.refused_whole:
            return Acknowledgement(decode_stage.PAYLOAD_FORMAT_INVALID, decoded.refusal_summary())
        return ACCEPTED

    def forget(self, generation: int) -> None:
        """Let go of what a lost connection delivered and no batch has taken: the broker sends it again."""
        dropped = self._batcher.drop(generation)
        for entry in dropped:
            if not entry.done.done():
                entry.done.set_result(None)  # its PUBACK goes to the dead connection, where it is void
        if dropped:
            self.stats.dropped_on_disconnect += len(dropped)
            log.info("released %d uncommitted messages of a lost connection; the broker redelivers them", len(dropped))

    async def run(self, stop: asyncio.Event) -> None:
        """Run every stage until `stop` is set; then flush what is held and disconnect."""
        async with asyncio.TaskGroup() as group:
            source_task = group.create_task(self._source.run(self.handle, stop), name="source")
            flusher = group.create_task(self._flush_loop(stop), name="flusher")
            post = group.create_task(self._post_commit_loop(), name="post-commit")
            side = [
                group.create_task(self._stats_loop(stop), name="stats"),
                group.create_task(self._maintenance_loop(stop), name="maintenance"),
                group.create_task(self._presence_loop(stop), name="presence"),
                group.create_task(self._state_loop(stop), name="state"),
                group.create_task(self._rebuild_loop(stop), name="rebuild"),
            ]
            await stop.wait()
            self._wakeup.set()
            try:
                async with asyncio.timeout(STOP_DRAIN_S):
                    await flusher  # commits and acknowledges everything already received
                    await self._committed.put(None)
                    await post  # replies and state of the last batches, while the connection is still up
                    self._publish_states()
                    await asyncio.sleep(0.2)  # lets the final PUBACKs and replies reach the socket before it closes
            except TimeoutError:
                flusher.cancel()
                post.cancel()
                log.warning(
                    "stopping with %d messages uncommitted after %.0f s (PostgreSQL or Redis is not answering): "
                    "they were never acknowledged, so the broker delivers them again",
                    self._uncommitted(),
                    STOP_DRAIN_S,
                )
            await self._source.disconnect()
            # What was left uncommitted: its PUBACK goes to the closed connection, where it is void.
            self._release_uncommitted()
            try:
                async with asyncio.timeout(STOP_STEP_S):
                    await source_task
            except TimeoutError:
                source_task.cancel()
            for task in side:
                task.cancel()
        for final in (self._last_device_state, self._sink.close, self._publish_stats):
            try:
                async with asyncio.timeout(STOP_STEP_S):
                    await final()
            except TimeoutError:
                log.info("%s did not finish within %.0f s at stop; skipped", final.__name__, STOP_STEP_S)

    def _uncommitted(self) -> int:
        return self._batcher.pending() + (len(self._committing) if self._committing is not None else 0)

    def _release_uncommitted(self) -> None:
        """End the handlers of every message no batch committed (after the connection closed: no PUBACK)."""
        entries = list(self._committing.entries) if self._committing is not None else []
        self._committing = None
        while self._batcher.pending():
            entries += self._batcher.take().entries
        for entry in entries:
            if not entry.done.done():
                entry.done.set_result(None)

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while True:
            due = self._batcher.due_in(time.monotonic())
            if stop.is_set() and due is None:
                return
            if due is None or due > 0:
                self._wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=due)
                if not stop.is_set() and (self._batcher.due_in(time.monotonic()) or 0) > 0:
                    continue
            if self._batcher.pending():
                await self._commit(self._batcher.take(), stop)

    async def _commit(self, batch: Batch, stop: asyncio.Event) -> None:
        self._committing = batch
        decoded = [entry.decoded for entry in batch.entries]
        delay = 0.1
        while True:
            try:
                # A link that stalls without an error (packets dropped, a peer that ACKs and never
                # answers) would hold the batch, and every PUBACK behind it, for ever: past the timeout
                # the connection is dropped and the batch written again (ON CONFLICT: at most once).
                async with asyncio.timeout(self._settings.bridge.write_timeout_s):
                    report = await self._sink.write(decoded)
                break
            except SinkUnavailableError as exc:
                self.stats.sink_retries += 1
                log.warning("batch of %d messages not committed (%s); retrying in %.1f s", len(batch), exc, delay)
            except TimeoutError:
                self.stats.sink_retries += 1
                self.stats.sink_timeouts += 1
                log.warning(
                    "batch of %d messages not committed within %.1f s (the database link stalled); "
                    "dropping the connection, retrying in %.1f s",
                    len(batch),
                    self._settings.bridge.write_timeout_s,
                    delay,
                )
                await self._sink.abort()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._settings.bridge.retry_max_s)
        self._committing = None
        self._account(report, decoded)
        # The database's reason is the last of a letter's rejections (`bridge.sink._with_db_reason`).
        database_reasons = {
            id(original): letter.rejections[-1].reason
            for original, letter in zip(report.refused_by_database_originals, report.refused_by_database, strict=True)
        }
        for entry in batch.entries:
            if not entry.done.done():
                entry.done.set_result(database_reasons.get(id(entry.decoded)))
        # A message the database refused was dead-lettered instead: it must not count as stored.
        refused = {id(d) for d in report.refused_by_database_originals}
        outcome = [d for d in decoded if id(d) not in refused] + report.refused_by_database
        await self._committed.put(Committed(outcome, datetime.now(UTC), report.revived, report.new_events))

    def _account(self, report: WriteReport, decoded: list[Decoded]) -> None:
        refused = {id(d) for d in report.refused_by_database_originals}
        stats = self.stats
        stats.batches += 1
        statuses = sum(1 for item in decoded if item.topic.endswith(STATUS_SUFFIX))
        stats.committed_statuses += statuses
        stats.committed_messages += report.messages - statuses
        stats.inserted_rows += report.inserted
        stats.rejected += report.rejected
        stats.refused_by_database += len(report.refused_by_database)
        stats.inserted_events += len(report.new_events)
        for item in decoded:
            if id(item) not in refused:
                stats.committed_samples += len(item.rows)
                stats.committed_readings += item.readings
                stats.committed_events += len(item.events)

    async def _post_commit_loop(self) -> None:
        while (committed := await self._committed.get()) is not None:
            accepted = [d for d in committed.decoded if d.stored]
            if self._device_state is not None:
                self._device_state.add(accepted)
            # QoS 0: a lost reply costs only a resend from the device, which the database dedupes,
            # whereas QoS 1 per device per batch would exhaust the packet ids the broker grants.
            replies = [
                *fanout.persisted_messages(accepted, committed.committed_at),
                *fanout.rejected_messages(d for d in committed.decoded if d.rejections),
            ]
            for topic, payload in replies:
                if not self._source.publish(topic, payload):
                    self.stats.replies_dropped += 1
            if committed.new_events and self._redis is not None:
                try:
                    await announce_events(self._redis, committed.new_events)
                except CacheUnavailableError as exc:
                    # Live delivery is best effort, like the state it travels with: the events are stored
                    # and listed by the REST API; a live client that missed them reads them there.
                    self.stats.cache_failures += 1
                    log.warning("%s", exc)
            updates = decode_stage.with_presence(decode_stage.coalesce(committed.decoded), committed.revived)
            if updates:
                seen = {d.device_id for d in accepted if d.device_id is not None}
                try:
                    changed = await self._cache.merge(updates, seen=seen, now=committed.committed_at)
                except CacheUnavailableError as exc:
                    self.stats.cache_failures += 1
                    log.warning("last-known state not updated: %s", exc)
                else:
                    self._republish(changed)

    def _republish(self, changed: States) -> None:
        """Queue each changed device's whole state for `fleet/v1/{id}/state`; the newest per device wins."""
        self._state_pending.update(changed)

    async def _state_loop(self, stop: asyncio.Event) -> None:
        """Publish the queued states, retained, once per interval: integrators see at most that much lag,
        and a busy device costs one publish per interval rather than one per batch."""
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=STATE_REPUBLISH_INTERVAL_S)
            self._publish_states()  # at shutdown, `run` publishes once more after the last batch

    def _publish_states(self) -> None:
        pending, self._state_pending = self._state_pending, {}
        for device, fields in pending.items():
            state = state_from_fields(device, fields)
            if not self._source.publish(device_topic(device, TopicKind.STATE), _json.encode(state), retain=True):
                self.stats.replies_dropped += 1

    async def _flush_device_state(self) -> None:
        """Write the newest values of the batches committed since the last flush to `device_state`."""
        if self._device_state is None:
            return
        try:
            # A stalled link must not hold the rebuild check behind this flush for ever: past the batch
            # writes' timeout the connection is dropped and the values stay pending for the next flush.
            async with asyncio.timeout(self._settings.bridge.write_timeout_s):
                await self._device_state.flush()
        except SinkUnavailableError as exc:
            log.warning("%s; %d devices' values kept for the next try", exc, self._device_state.pending())
        except TimeoutError:
            log.warning(
                "device_state not written within %.1f s (the database link stalled); %d devices' values kept",
                self._settings.bridge.write_timeout_s,
                self._device_state.pending(),
            )
            await self._device_state.close()

    async def _last_device_state(self) -> None:
        """At stop: write what the last batches committed, and close the connection."""
        if self._device_state is not None:
            try:
                await self._flush_device_state()
            finally:
                # Also when the stop's deadline cut the flush short: the connection is closed, not collected.
                await self._device_state.close()

    async def _rebuild_loop(self, stop: asyncio.Event) -> None:
        """Once a second: write `device_state` (`bridge.statestore`), then rebuild the state cache from it
        if Redis came back empty (`bridge.rebuild`). In that order, a rebuild reads every value this
        instance committed until then."""
        while not stop.is_set():
            await self._flush_device_state()
            if self._rebuild is not None:
                await self._rebuild_if_emptied()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=REBUILD_CHECK_INTERVAL_S)

    async def _rebuild_if_emptied(self) -> None:
        assert self._rebuild is not None
        try:
            report = await self._rebuild.check(datetime.now(UTC))
        except CacheUnavailableError as exc:
            log.debug("state cache check: %s", exc)  # the merge path already warns while Redis is away
        except SinkUnavailableError as exc:
            log.warning("state cache not rebuilt: %s; trying again", exc)
        else:
            if report is not None:
                self._republish(report.changed)

    async def _presence_loop(self, stop: asyncio.Event) -> None:
        """Mark devices offline that have been silent for longer than the presence timeout.

        PostgreSQL decides (one conditional statement, see `bridge.sink`); Redis, the live stream and
        the retained state follow what it decided.
        """
        timeout = timedelta(seconds=self._settings.bridge.presence_timeout_s)
        interval = min(PRESENCE_SWEEP_INTERVAL_S, timeout.total_seconds() / 2)
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            if stop.is_set():
                return
            now = datetime.now(UTC)
            try:
                # The sweep takes turns with the batch writes on the sink's one connection: on a stalled
                # link it would hold that turn for ever and every batch behind it, so it has the batch
                # writes' timeout and drops the connection like them.
                async with asyncio.timeout(self._settings.bridge.write_timeout_s):
                    offline = await self._sink.sweep_presence(cutoff=now - timeout, now=now)
            except SinkUnavailableError as exc:
                log.warning("presence sweep skipped: %s", exc)
                continue
            except TimeoutError:
                log.warning(
                    "presence sweep not answered within %.1f s (the database link stalled); dropping the connection",
                    self._settings.bridge.write_timeout_s,
                )
                await self._sink.abort()
                continue
            if not offline:
                continue
            log.info("%d devices silent for %s: marked offline", len(offline), timeout)
            try:
                changed = await self._cache.merge(decode_stage.with_presence({}, offline), seen=(), now=now)
            except CacheUnavailableError as exc:
                self.stats.cache_failures += 1
                log.warning("presence not updated in the state cache: %s", exc)
            else:
                self._republish(changed)

    async def _stats_loop(self, stop: asyncio.Event) -> None:
        last_log = time.monotonic()
        interval = self._settings.bridge.stats_interval_ms / 1000
        while not stop.is_set():
            await asyncio.sleep(interval)
            await self._publish_stats()
            if time.monotonic() - last_log >= STATS_LOG_INTERVAL_S:
                last_log = time.monotonic()
                s = self.stats
                log.info(
                    "received %d, committed %d msgs / %d readings, rejected %d, in flight %d, batches %d",
                    s.received,
                    s.committed_messages,
                    s.committed_readings,
                    s.rejected,
                    s.inflight,
                    s.batches,
                )

    async def _publish_stats(self) -> None:
        if self._redis is None:
            return
        status = self._source.status
        fields = self.stats.as_fields(connects=status.connects, session_present=status.session_present)
        mapping: dict[EncodableT, EncodableT] = dict(fields.items())
        try:
            await self._redis.hset(stats_key(self._settings.mqtt.client_id), mapping=mapping)
        except (RedisError, OSError) as exc:
            log.debug("stats not published: %s", exc)

    async def _maintenance_loop(self, stop: asyncio.Event) -> None:
        database = self._settings.database
        while not stop.is_set():
            try:
                await asyncio.to_thread(
                    _maintain_partitions, database.url, database.partitions_ahead_days, database.retention_days
                )
            except psycopg.Error as exc:
                log.warning("partition maintenance failed: %s; next try in %.0f s", exc, MAINTENANCE_INTERVAL_S)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=MAINTENANCE_INTERVAL_S)


def _maintain_partitions(url: str, ahead_days: int, retention_days: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        partitions.maintain(conn, now=datetime.now(UTC), ahead_days=ahead_days, retention_days=retention_days)


def build(settings: Settings) -> tuple[Bridge, aioredis.Redis]:
    """Construct the bridge from settings; the caller owns the Redis client's lifetime."""
    mqtt = settings.mqtt
    source = MqttSource(
        url=mqtt.url,
        client_id=mqtt.client_id,
        # Status is retained, and shared subscriptions never receive retained messages (MQTT 5 §4.8.2):
        # every instance reads every status; presence updates are idempotent.
        subscriptions=[
            shared(TopicKind.TELEMETRY, mqtt.share_group),
            shared(TopicKind.EVENTS, mqtt.share_group),
            # Command acknowledgements: in the same persistent session as telemetry, acknowledged after
            # COMMIT, so one sent while every bridge is down waits in the broker and is recorded once.
            shared(TopicKind.CMD_ACK, mqtt.share_group),
            shared(TopicKind.OTA, mqtt.share_group),
            wildcard(TopicKind.STATUS),
        ],
        receive_maximum=mqtt.receive_maximum,
        session_expiry_s=mqtt.session_expiry_s,
        keepalive_s=mqtt.keepalive_s,
        retry_max_s=settings.bridge.retry_max_s,
        high_water=settings.bridge.max_held_messages,
    )
    redis = aioredis.Redis.from_url(settings.redis.url)
    cache = RedisStateCache(redis)
    bridge = Bridge(
        settings,
        source=source,
        sink=PostgresTelemetrySink(settings.database.url, abandon_after_s=2 * settings.bridge.write_timeout_s),
        cache=cache,
        redis=redis,
        rebuild=StateRebuild(redis, cache, settings.database.url, owner=mqtt.client_id),
        device_state=DeviceStateWriter(settings.database.url, abandon_after_s=2 * settings.bridge.write_timeout_s),
    )
    source.on_connection_lost = bridge.forget
    return bridge, redis


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run one bridge instance until `stop` is set."""
    bridge, redis = build(settings)
    try:
        await bridge.run(stop)
    finally:
        try:
            async with asyncio.timeout(STOP_STEP_S):
                await redis.aclose()
        except TimeoutError:
            log.info("the Redis connection did not close within %.0f s at stop; left to the OS", STOP_STEP_S)
