"""Decoding a fetch: unwrap each message, run the partition's engine, count.

Undecodable messages and detector failures become dead letters; none stops a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from aiokafka import TopicPartition

from detectors.detector import Finding
from detectors.engine import DetectionEngine
from service import metrics
from service.dead_letters import DeadLetter
from service.envelopes import DecodeFailure, Unwrapped, unwrap

_log = structlog.get_logger(__name__)
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


@dataclass(slots=True)
class Totals:
    """Running sums over the batches stored, for the consumer's exit summary."""

    batches: int = 0
    messages: int = 0
    records: int = 0
    findings: int = 0
    alerts_created: int = 0
    dead_letters: int = 0
    conflicts: int = 0

    def add(self, batch: Batch, alerts_created: int) -> None:
        """Count a stored batch; one debug line per batch."""
        self.batches += 1
        self.messages += batch.messages
        self.records += batch.records
        self.findings += len(batch.findings)
        self.alerts_created += alerts_created
        self.dead_letters += len(batch.dead_letters)
        _log.debug(
            "batch.committed",
            messages=batch.messages,
            records=batch.records,
            findings=len(batch.findings),
            alerts_created=alerts_created,
            dead_letters=len(batch.dead_letters),
            offsets={f"{tp.partition}": offset for tp, offset in batch.offsets.items()},
        )


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
