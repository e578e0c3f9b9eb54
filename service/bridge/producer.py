"""Produce CloudTrail records to Kafka: one message per record, keyed by account.

Every send is awaited until the broker acknowledges it (acks=all), so callers
delete their input only once Kafka holds it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from service.bridge.metrics import PRODUCE_SECONDS, RECORDS_BRIDGED
from service.bridge.settings import BridgeSettings
from service.errors import ServiceError
from service.records import CloudTrailRecord

__all__ = ["KafkaUnavailable", "RecordProducer", "record_key"]

_log = structlog.get_logger(__name__)


class KafkaUnavailable(ServiceError):
    """Kafka did not acknowledge every message in time."""


def record_key(record: CloudTrailRecord, fallback: str | None) -> bytes | None:
    """The partitioning key: `recipientAccountId`, else `fallback` (the key's account).

    All records of one account land on one partition, so a session's AssumeRole
    and its later calls reach the same detector state.
    """
    account = record.recipient_account_id or fallback
    return account.encode() if account else None


class RecordProducer:
    """An aiokafka producer for records and dead letters, with acks=all."""

    def __init__(self, settings: BridgeSettings) -> None:
        self.topic = settings.kafka_topic
        self.dead_letter_topic = settings.dead_letter_topic
        self._settings = settings
        self._timeout = settings.bridge_produce_timeout_seconds
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect; with idempotence "auto", fall back when the broker refuses it.

        Raises KafkaUnavailable when the brokers cannot be reached.
        """
        mode = self._settings.kafka_idempotence
        try:
            self._producer = await self._connect(idempotent=mode != "off")
        except KafkaError as exc:
            if mode != "auto":
                raise self._unavailable(exc) from exc
            _log.warning("bridge.idempotence_unsupported", error=repr(exc))
            try:
                self._producer = await self._connect(idempotent=False)
            except KafkaError as retry_exc:
                raise self._unavailable(retry_exc) from retry_exc

    async def stop(self) -> None:
        """Flush and close; safe to call twice."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def send_records(
        self,
        records: Sequence[CloudTrailRecord],
        *,
        fallback_account: str | None,
        source: str,
    ) -> None:
        """Produce every record and wait for every ack; raises KafkaUnavailable."""
        messages = [
            (orjson.dumps(dict(record.raw)), record_key(record, fallback_account))
            for record in records
        ]
        started = time.perf_counter()
        await self._send_all(self.topic, messages)
        PRODUCE_SECONDS.observe(time.perf_counter() - started)
        RECORDS_BRIDGED.labels(source).inc(len(records))

    async def send_dead_letter(
        self, *, source: str, reason: str, detail: str, **where: str | None
    ) -> None:
        """Produce one JSON dead letter naming the input and why it failed."""
        letter = {
            "source": source,
            "reason": reason,
            "detail": detail,
            "time": datetime.now(UTC).isoformat(),
            **where,
        }
        await self._send_all(self.dead_letter_topic, [(orjson.dumps(letter), None)])

    async def _send_all(
        self, topic: str, messages: Sequence[tuple[bytes, bytes | None]]
    ) -> None:
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("the producer is not started")
        try:
            async with asyncio.timeout(self._timeout):
                acks = [
                    await producer.send(topic, value, key=key)
                    for value, key in messages
                ]
                await asyncio.gather(*acks)
        except (KafkaError, TimeoutError) as exc:
            raise self._unavailable(exc) from exc

    async def _connect(self, *, idempotent: bool) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=idempotent,
            linger_ms=5,
            request_timeout_ms=int(self._timeout * 1000),
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        _log.info("bridge.producer_started", idempotent=idempotent)
        return producer

    def _unavailable(self, exc: BaseException) -> KafkaUnavailable:
        servers = self._settings.kafka_bootstrap_servers
        return KafkaUnavailable(f"Kafka at {servers} did not acknowledge: {exc!r}")
