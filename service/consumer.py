"""The Kafka consumer: fetch → decode and detect → checkpoint → commit → forward.

Each partition's alerts, dead letters, detector state and next offset are stored
in one transaction (its checkpoint); Kafka commits follow, for lag and tooling.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from detectors.engine import DetectionEngine
from detectors.third_parties import Policy
from service import metrics
from service.alerts import AlertChange
from service.checkpoints import StoreRetry, forward_created, save_checkpoint
from service.decoding import Batch, Fetched, Totals, decode_batch
from service.envelopes import MAX_PAYLOAD_BYTES
from service.errors import ServiceError
from service.forwarders import Forwarder
from service.partitions import OwnedPartition, Partitions
from service.settings import Settings
from service.store import AlertStore, CheckpointConflict

__all__ = ["Batch", "CloudTrailConsumer", "decode_batch"]

_log = structlog.get_logger(__name__)

# Fetch limits above the largest payload we decode, so an oversized message is
# fetched, counted and kept as a dead letter instead of stalling the partition.
_PARTITION_FETCH_BYTES = MAX_PAYLOAD_BYTES + 1024 * 1024
_FETCH_BYTES = 4 * _PARTITION_FETCH_BYTES
_POLL_MS = 500
_BROKER_PROBE_SECONDS = 2.0
_BROKER_TIMEOUT_SECONDS = 5.0


class CloudTrailConsumer:
    """Consumes CloudTrail messages from one topic as a member of a consumer group."""

    def __init__(
        self,
        settings: Settings,
        store: AlertStore,
        policy: Policy,
        forwarder: Forwarder | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._forwarder = forwarder
        self._kafka: AIOKafkaConsumer | None = None
        grace = timedelta(seconds=settings.event_grace_seconds)
        self._partitions = Partitions(policy, grace)
        # Held while a batch is stored and committed; revoke waits for it.
        self._batch_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._retry = StoreRetry(settings.store_retry_max_seconds)
        self._broker_failing = False
        self._broker_probed = 0.0
        self._running = False
        self.totals = Totals()

    def not_ready_reason(self) -> str | None:
        """Why the consumer is not ready, or None when it is.

        Ready means joined to Kafka, with the broker answering and the store writing.
        """
        if not self._running:
            return "consumer is starting or stopping"
        if self._retry.failing:
            return "alert store is unavailable; retrying the batch in hand"
        if self._broker_failing:
            return "Kafka broker is unreachable; reconnecting"
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in hand is stored and committed."""
        self._stop = stop
        self._kafka = self._new_kafka_consumer()
        try:
            await self._kafka.start()
        except KafkaError as exc:
            await self._kafka.stop()
            servers = self._settings.kafka_bootstrap_servers
            raise ServiceError(f"cannot reach Kafka at {servers!r}: {exc}") from exc
        except asyncio.CancelledError:
            # Another part failed while we were joining (the HTTP port was taken).
            await self._kafka.stop()
            raise

        self._kafka.subscribe([self._settings.kafka_topic], listener=_Listener(self))
        self._running = True
        _log.info("consumer.started", topic=self._settings.kafka_topic)
        try:
            while not stop.is_set():
                await self._poll(self._kafka)
        finally:
            self._running = False
            await self._kafka.stop()
            _log.info("consumer.stopped", **dataclasses.asdict(self.totals))

    def _new_kafka_consumer(self) -> AIOKafkaConsumer:
        session_timeout = self._settings.kafka_session_timeout_seconds
        return AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            group_id=self._settings.kafka_group_id,
            client_id="trailwarden",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=_PARTITION_FETCH_BYTES,
            fetch_max_bytes=_FETCH_BYTES,
            # A replica that dies (SIGKILL, OOM) holds its partitions this long.
            session_timeout_ms=int(session_timeout * 1000),
            heartbeat_interval_ms=int(session_timeout * 1000 / 3),
        )

    async def _poll(self, kafka: AIOKafkaConsumer) -> None:
        await self._restore_pending(kafka)
        try:
            fetched = await kafka.getmany(
                timeout_ms=_POLL_MS, max_records=self._settings.kafka_max_batch_records
            )
        except KafkaError as exc:
            # aiokafka reconnects by itself; the probe below reports readiness.
            _log.warning("consumer.fetch_failed", error=str(exc))
            fetched = {}
        if fetched:
            async with self._batch_lock:
                await self._handle(kafka, fetched)
        await self._probe_broker(kafka)
        await self._update_lag(kafka)

    async def _restore_pending(self, kafka: AIOKafkaConsumer) -> None:
        """Restore assigned partitions from their checkpoints, then seek and resume."""
        for tp in sorted(self._partitions.pending, key=lambda tp: tp.partition):
            owned = await self._retry(
                "partition.restore_failed",
                functools.partial(self._partitions.restore, self._store, tp),
                functools.partial(self._restore_wanted, tp),
            )
            if owned is None:
                continue
            await self._seek_to_checkpoint(kafka, owned)
            kafka.resume(tp)
            _log.info(
                "partition.restored",
                partition=f"{tp.topic}/{tp.partition}",
                next_offset=owned.position,
                state_entries=sum(owned.engine.state_sizes().values()),
            )
        self._partitions.export_state_sizes()

    async def _seek_to_checkpoint(
        self, kafka: AIOKafkaConsumer, owned: OwnedPartition
    ) -> None:
        if owned.position is None:
            return
        end = (await kafka.end_offsets([owned.tp]))[owned.tp]
        if owned.position <= end:
            kafka.seek(owned.tp, owned.position)
            return

        # Waiting for the log to grow past the checkpoint would skip every new
        # record until then; read the new log from its start instead.
        _log.warning(
            "partition.log_restarted",
            partition=f"{owned.tp.topic}/{owned.tp.partition}",
            checkpoint=owned.position,
            log_end=end,
        )
        owned.log_restarted = True
        await kafka.seek_to_beginning(owned.tp)

    def _restore_wanted(self, tp: TopicPartition) -> bool:
        return tp in self._partitions.pending and not self._stop.is_set()

    async def _handle(self, kafka: AIOKafkaConsumer, fetched: Fetched) -> None:
        started = time.perf_counter()
        received_at = datetime.now(UTC)
        offsets: dict[TopicPartition, int] = {}
        for tp, messages in fetched.items():
            # Records of partitions revoked or reset since the fetch are skipped:
            # they are read again from the checkpoint.
            owned = self._partitions.owned.get(tp)
            fresh = [] if owned is None else owned.fresh(messages)
            if owned is None or not fresh:
                continue
            batch = decode_batch({tp: fresh}, _always(owned.engine), received_at)
            changes = await self._store_batch(kafka, owned, batch)
            if changes is None:
                continue
            offsets[tp] = batch.offsets[tp]
            self.totals.add(batch, forward_created(changes, self._forwarder))

        self._partitions.export_state_sizes()
        await self._commit(kafka, offsets)
        metrics.PROCESSING_SECONDS.observe(time.perf_counter() - started)

    async def _store_batch(
        self, kafka: AIOKafkaConsumer, owned: OwnedPartition, batch: Batch
    ) -> list[AlertChange] | None:
        """Store the partition's batch with its checkpoint; None if it is void."""
        tp = owned.tp
        try:
            return await save_checkpoint(
                self._store,
                self._retry,
                owned,
                batch,
                lambda: self._partitions.owned.get(tp) is owned,
            )
        except CheckpointConflict as exc:
            # Another replica (or a write of ours whose answer was lost) moved the
            # checkpoint: this batch is void; restore the partition and read again.
            metrics.CHECKPOINT_CONFLICTS.inc()
            self.totals.conflicts += 1
            _log.warning("batch.checkpoint_conflict", error=str(exc))
            self._partitions.reset(tp)
            if tp in kafka.assignment():
                kafka.pause(tp)
            return None

    async def _commit(
        self, kafka: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
    ) -> None:
        # Never for a partition we no longer own; the checkpoint is the truth anyway.
        owned = {tp: o for tp, o in offsets.items() if tp in self._partitions.owned}
        if not owned:
            return
        try:
            async with asyncio.timeout(_BROKER_TIMEOUT_SECONDS):
                await kafka.commit(owned)
        except (KafkaError, TimeoutError) as exc:
            _log.warning("batch.commit_failed", error=str(exc) or type(exc).__name__)

    async def _probe_broker(self, kafka: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if now - self._broker_probed < _BROKER_PROBE_SECONDS:
            return
        self._broker_probed = now
        try:
            async with asyncio.timeout(_BROKER_TIMEOUT_SECONDS):
                await kafka.topics()
        except (KafkaError, TimeoutError) as exc:
            if not self._broker_failing:
                _log.warning("broker.unreachable", error=str(exc) or type(exc).__name__)
            self._broker_failing = True
            return
        if self._broker_failing:
            _log.info("broker.reachable")
        self._broker_failing = False

    async def _update_lag(self, kafka: AIOKafkaConsumer) -> None:
        assigned = kafka.assignment()
        for tp in list(self._partitions.owned):
            highwater = kafka.highwater(tp)
            if tp not in assigned or highwater is None:
                continue
            try:
                position = await kafka.position(tp)
            except KafkaError:
                continue
            metrics.CONSUMER_LAG.labels(str(tp.partition)).set(
                max(0, highwater - position)
            )

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        if not assigned or self._kafka is None:
            return
        # Nothing is fetched for a partition until its checkpoint is restored.
        self._kafka.pause(*assigned)
        self._partitions.assign(assigned)
        _log.info("partitions.assigned", partitions=_partition_list(assigned))

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        # Dropped first, so a batch in hand that the store keeps refusing stops
        # retrying; one the store takes is still written (fenced by its
        # checkpoint) before the new owner is let in.
        self._partitions.revoke(revoked)
        async with self._batch_lock:
            for tp in revoked:
                with contextlib.suppress(KeyError):
                    metrics.CONSUMER_LAG.remove(str(tp.partition))
        _log.info("partitions.revoked", partitions=_partition_list(revoked))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: CloudTrailConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._consumer.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._consumer.on_assigned(assigned)


def _always(engine: DetectionEngine) -> Callable[[TopicPartition], DetectionEngine]:
    return lambda _tp: engine


def _partition_list(tps: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}/{tp.partition}" for tp in tps)
