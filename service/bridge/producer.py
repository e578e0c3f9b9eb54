"""Produce CloudTrail records to Kafka: one message per record, keyed by account.

Records are encoded before anything is sent; a batch is sent whole, then every
ack awaited (acks=all), so callers delete their input only once Kafka holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from service.bridge.metrics import PRODUCE_SECONDS, RECORDS_BRIDGED
from service.bridge.settings import BridgeSettings
from service.errors import ServiceError
from service.records import CloudTrailRecord

__all__ = [
    "EncodedRecords",
    "KafkaUnavailable",
    "Message",
    "RecordProducer",
    "Unencodable",
    "UnencodableRecord",
    "encode_record",
    "encode_records",
    "record_key",
]

# A Kafka message: the record's JSON and its partitioning key.
Message = tuple[bytes, bytes | None]

_log = structlog.get_logger(__name__)
# aiokafka logs an ERROR before raising when a broker refuses InitProducerId;
# with idempotence "auto" that refusal is expected and reported by our warning.
_SENDER_LOGGER = "aiokafka.producer.sender"
_PID_REFUSED = "Unexpected error during InitProducerIdRequest"


class KafkaUnavailable(ServiceError):
    """Kafka did not acknowledge every message in time."""


class UnencodableRecord(ValueError):
    """A record whose JSON cannot be written again (orjson nests 254 levels at most).

    Kafka must receive only what the consumer can decode and re-encode, so such a
    record is dead-lettered rather than written some other way.
    """


@dataclass(frozen=True, slots=True)
class Unencodable:
    """A record left out of a batch: its position, eventID and why."""

    index: int
    event_id: str | None
    detail: str


@dataclass(slots=True)
class EncodedRecords:
    """The messages of a batch, and the records that could not be encoded."""

    messages: list[Message] = field(default_factory=list)
    unencodable: list[Unencodable] = field(default_factory=list)


def record_key(record: CloudTrailRecord, fallback: str | None) -> bytes | None:
    """The partitioning key: `recipientAccountId`, else `fallback` (the key's account).

    All records of one account land on one partition, so a session's AssumeRole
    and its later calls reach the same detector state.
    """
    account = record.recipient_account_id or fallback
    return account.encode() if account else None


def encode_record(record: CloudTrailRecord, fallback: str | None) -> Message:
    """The record's message; raises UnencodableRecord saying why it cannot be."""
    try:
        value = orjson.dumps(dict(record.raw))
    except orjson.JSONEncodeError as exc:
        if "Recursion limit" in str(exc):
            raise UnencodableRecord("nested more than 254 levels deep") from exc
        raise UnencodableRecord(f"not encodable as JSON: {exc}") from exc
    return value, record_key(record, fallback)


def encode_records(
    records: Sequence[CloudTrailRecord], *, fallback_account: str | None
) -> EncodedRecords:
    """Encode every record it can; the others are listed with their index."""
    encoded = EncodedRecords()
    for index, record in enumerate(records):
        try:
            encoded.messages.append(encode_record(record, fallback_account))
        except UnencodableRecord as exc:
            encoded.unencodable.append(Unencodable(index, record.event_id, str(exc)))
    return encoded


class RecordProducer:
    """An aiokafka producer for records and dead letters, with acks=all."""

    def __init__(
        self, settings: BridgeSettings, *, timeout: float | None = None
    ) -> None:
        """`timeout` bounds each batch's acks; default the produce timeout setting."""
        self.topic = settings.kafka_topic
        self.dead_letter_topic = settings.dead_letter_topic
        self._settings = settings
        self._timeout = (
            settings.bridge_produce_timeout_seconds if timeout is None else timeout
        )
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect; with idempotence "auto", fall back when the broker refuses it.

        Raises KafkaUnavailable when the brokers cannot be reached.
        """
        mode = self._settings.kafka_idempotence
        try:
            with _quiet_pid_refusal() if mode == "auto" else contextlib.nullcontext():
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

    async def send_records(self, messages: Sequence[Message], *, source: str) -> None:
        """Produce encoded records, then wait for every ack; raises KafkaUnavailable."""
        started = time.perf_counter()
        await self._send_all(self.topic, messages)
        PRODUCE_SECONDS.observe(time.perf_counter() - started)
        RECORDS_BRIDGED.labels(source).inc(len(messages))

    async def send_dead_letter(
        self, *, source: str, reason: str, detail: str, **where: str | int | None
    ) -> None:
        """Produce one JSON dead letter naming the input and why it failed."""
        letter = {"source": source, "reason": reason, "detail": detail, **where}
        await self.send_dead_letters([letter])

    async def send_dead_letters(
        self, letters: Sequence[Mapping[str, str | int | None]]
    ) -> None:
        """Produce JSON dead letters (source, reason, detail, where), time-stamped."""
        now = datetime.now(UTC).isoformat()
        messages = [(orjson.dumps({**letter, "time": now}), None) for letter in letters]
        await self._send_all(self.dead_letter_topic, messages)

    async def _send_all(self, topic: str, messages: Sequence[Message]) -> None:
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("the producer is not started")
        try:
            async with asyncio.timeout(self._timeout):
                # Queue every message first, so the acks of a batch come together.
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


class _DropPidRefusal(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_PID_REFUSED)


@contextlib.contextmanager
def _quiet_pid_refusal() -> Iterator[None]:
    """Drop aiokafka's ERROR about a refused InitProducerId while it is in hand."""
    logger = logging.getLogger(_SENDER_LOGGER)
    drop = _DropPidRefusal()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
