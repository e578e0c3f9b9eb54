"""The Kafka consumer: fetch → unwrap → detect → store → commit → forward.

Offsets are committed only after the batch's alerts and dead letters are stored.
Each partition has its own DetectionEngine, made on assign and dropped on revoke.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from detectors.detector import Finding
from detectors.engine import DetectionEngine
from detectors.third_parties import Policy
from service import metrics
from service.alerts import AlertChange
from service.dead_letters import DeadLetter
from service.envelopes import MAX_PAYLOAD_BYTES, DecodeFailure, Unwrapped, unwrap
from service.errors import ServiceError
from service.forwarders import Forwarder
from service.settings import Settings
from service.store import AlertStore, StoreUnavailable

_log = structlog.get_logger(__name__)

# Fetch limits above the largest payload we decode, so an oversized message is
# fetched, counted and kept as a dead letter instead of stalling the partition.
_PARTITION_FETCH_BYTES = MAX_PAYLOAD_BYTES + 1024 * 1024
_FETCH_BYTES = 4 * _PARTITION_FETCH_BYTES
_POLL_MS = 500
_STORE_RETRY_FIRST = 0.5
_STORE_RETRY_MAX = 30.0
_MAX_DETAIL = 500

Fetched = Mapping[TopicPartition, Sequence[Any]]


@dataclass(slots=True)
class Batch:
    """What one fetch turned into; `offsets` are the next offsets to commit."""

    messages: int = 0
    records: int = 0
    findings: list[Finding] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)


def decode_batch(
    fetched: Fetched,
    engine_for: Callable[[TopicPartition], DetectionEngine],
    received_at: datetime,
) -> Batch:
    """Unwrap and run the detectors over fetched messages, counting as it goes.

    Undecodable messages become dead letters, logged once each; they never stop
    the batch.
    """
    batch = Batch()
    for tp, messages in fetched.items():
        engine = engine_for(tp)
        for message in messages:
            _decode_message(message, engine, batch, received_at)
            batch.offsets[tp] = message.offset + 1
    metrics.MESSAGES_CONSUMED.inc(batch.messages)
    return batch


def _decode_message(
    message: Any, engine: DetectionEngine, batch: Batch, received_at: datetime
) -> None:
    batch.messages += 1
    payload: bytes = message.value if message.value is not None else b""
    if message.value is None:
        unwrapped = Unwrapped(
            failures=[DecodeFailure("empty", "tombstone: message value is null")]
        )
    else:
        unwrapped = unwrap(payload)

    _count(unwrapped)
    if unwrapped.failures:
        batch.dead_letters.append(
            _undecodable(message, unwrapped.failures, received_at)
        )
    for record in unwrapped.records:
        try:
            findings = engine.process(record)
        except Exception:  # noqa: BLE001 - logged with its traceback below
            # A detector bug on one odd record must not stop the partition.
            _log.exception(
                "record.detection_failed",
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                event_id=record.event_id,
            )
            detail = f"detectors failed on event {record.event_id}"
            letter = _dead_letter(message, "detection_failed", detail, received_at)
            batch.dead_letters.append(letter)
            continue
        batch.records += 1
        batch.findings.extend(findings)
        for finding in findings:
            metrics.FINDINGS.labels(finding.detector).inc()


def _count(unwrapped: Unwrapped) -> None:
    if unwrapped.records:
        metrics.RECORDS_DECODED.labels(unwrapped.envelope).inc(len(unwrapped.records))
    for reason, count in unwrapped.skipped.items():
        metrics.RECORDS_SKIPPED.labels(reason).inc(count)
    for failure in unwrapped.failures:
        metrics.DECODE_FAILURES.labels(failure.reason).inc()


def _undecodable(
    message: Any, failures: list[DecodeFailure], received_at: datetime
) -> DeadLetter:
    first = failures[0]
    _log.warning(
        "record.undecodable",
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        reason=first.reason,
        failures=len(failures),
        detail=first.detail,
    )
    detail = "; ".join(failure.detail for failure in failures)
    return _dead_letter(message, first.reason, detail, received_at)


def _dead_letter(
    message: Any, reason: str, detail: str, received_at: datetime
) -> DeadLetter:
    if len(detail) > _MAX_DETAIL:
        detail = detail[: _MAX_DETAIL - 1] + "…"
    return DeadLetter(
        source=message.topic,
        partition=message.partition,
        offset=message.offset,
        reason=reason,
        detail=detail,
        payload=message.value if message.value is not None else b"",
        received_at=received_at,
    )


@dataclass(slots=True)
class _Totals:
    batches: int = 0
    messages: int = 0
    records: int = 0
    findings: int = 0
    alerts_created: int = 0
    dead_letters: int = 0


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
        self._policy = policy
        self._forwarder = forwarder
        self._kafka: AIOKafkaConsumer | None = None
        self._engines: dict[TopicPartition, DetectionEngine] = {}
        # Held while a batch is stored and committed; revoke waits for it.
        self._batch_lock = asyncio.Lock()
        self._store_failing = False
        self._running = False
        self.totals = _Totals()

    def is_ready(self) -> bool:
        """True once joined to Kafka and while the store takes writes."""
        return self._running and not self._store_failing

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in hand is stored and committed."""
        self._kafka = self._new_kafka_consumer()
        try:
            await self._kafka.start()
        except KafkaError as exc:
            await self._kafka.stop()
            servers = self._settings.kafka_bootstrap_servers
            raise ServiceError(f"cannot reach Kafka at {servers!r}: {exc}") from exc

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
        return AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            group_id=self._settings.kafka_group_id,
            client_id="trailwarden",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=_PARTITION_FETCH_BYTES,
            fetch_max_bytes=_FETCH_BYTES,
        )

    async def _poll(self, kafka: AIOKafkaConsumer) -> None:
        fetched = await kafka.getmany(
            timeout_ms=_POLL_MS, max_records=self._settings.kafka_max_batch_records
        )
        if fetched:
            async with self._batch_lock:
                await self._handle(kafka, fetched)
        await self._update_lag(kafka)

    async def _handle(self, kafka: AIOKafkaConsumer, fetched: Fetched) -> None:
        started = time.perf_counter()
        # Records of partitions revoked since the fetch belong to their new owner.
        owned = {tp: msgs for tp, msgs in fetched.items() if tp in self._engines}
        if not owned:
            return

        batch = decode_batch(owned, self._engines.__getitem__, datetime.now(UTC))
        changes = await self._save(batch)
        await self._commit(kafka, batch.offsets)
        created = self._forward(changes)
        metrics.PROCESSING_SECONDS.observe(time.perf_counter() - started)
        self._add_totals(batch, created)

    async def _save(self, batch: Batch) -> list[AlertChange]:
        """Store the batch, retrying until the store takes it: no batch is skipped."""
        changes: list[AlertChange] | None = None
        letters_saved = not batch.dead_letters
        attempt = 0
        while True:
            try:
                if changes is None:
                    changes = await self._save_findings(batch.findings)
                if not letters_saved:
                    await self._store.save_dead_letters(batch.dead_letters)
                    letters_saved = True
            except StoreUnavailable as exc:
                attempt += 1
                self._store_failing = True
                delay = _store_retry_delay(attempt)
                _log.warning(
                    "batch.store_failed",
                    attempt=attempt,
                    retry_in=round(delay, 2),
                    error=str(exc),
                )
                await asyncio.sleep(delay)
                continue

            self._store_failing = False
            return changes

    async def _save_findings(self, findings: list[Finding]) -> list[AlertChange]:
        if not findings:
            return []
        return await self._store.save_findings(findings)

    async def _commit(
        self, kafka: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
    ) -> None:
        try:
            await kafka.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced: the new owner re-reads from the last commit and
            # the store merges the repeats into the same alerts.
            _log.warning("batch.commit_failed", error=str(exc))

    def _forward(self, changes: list[AlertChange]) -> int:
        created = 0
        for change in changes:
            if not change.created:
                continue
            alert = change.alert
            created += 1
            metrics.ALERTS.labels(alert.detector, alert.severity).inc()
            _log.info(
                "alert.created",
                alert_id=alert.id,
                detector=alert.detector,
                severity=alert.severity,
                third_party=alert.third_party,
                account_id=alert.account_id,
            )
            if self._forwarder is not None:
                self._forwarder.submit(alert)
        return created

    def _add_totals(self, batch: Batch, created: int) -> None:
        totals = self.totals
        totals.batches += 1
        totals.messages += batch.messages
        totals.records += batch.records
        totals.findings += len(batch.findings)
        totals.alerts_created += created
        totals.dead_letters += len(batch.dead_letters)
        _log.debug(
            "batch.committed",
            messages=batch.messages,
            records=batch.records,
            findings=len(batch.findings),
            alerts_created=created,
            dead_letters=len(batch.dead_letters),
            offsets={f"{tp.partition}": offset for tp, offset in batch.offsets.items()},
        )

    async def _update_lag(self, kafka: AIOKafkaConsumer) -> None:
        assigned = kafka.assignment()
        for tp in list(self._engines):
            highwater = kafka.highwater(tp)
            if tp not in assigned or highwater is None:
                continue
            position = await kafka.position(tp)
            lag = max(0, highwater - position)
            metrics.CONSUMER_LAG.labels(str(tp.partition)).set(lag)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        if not assigned:
            return
        for tp in assigned:
            self._engines.setdefault(tp, DetectionEngine(self._policy))
        _log.info("partitions.assigned", partitions=_partition_list(assigned))

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        async with self._batch_lock:
            for tp in revoked:
                self._engines.pop(tp, None)
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


def _store_retry_delay(attempt: int) -> float:
    ceiling = min(_STORE_RETRY_MAX, _STORE_RETRY_FIRST * 2 ** min(attempt - 1, 10))
    return random.uniform(ceiling / 2, ceiling)


def _partition_list(tps: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}/{tp.partition}" for tp in tps)
