"""Move one S3 log file into Kafka: skip, fetch, decode, produce, or dead-letter.

Shared by the SQS loop and the backfill, so both treat a file the same way.
"""

from __future__ import annotations

from typing import Any, Literal

import structlog

from service.bridge.metrics import FAILURES, FILES_BRIDGED, FILES_SKIPPED
from service.bridge.notifications import LogObject
from service.bridge.producer import RecordProducer, Unencodable, encode_records
from service.bridge.s3_files import (
    ObjectUnreadable,
    account_from_key,
    fetch_log_file,
    key_kind,
)

__all__ = ["FileOutcome", "bridge_file"]

FileOutcome = Literal["bridged", "skipped", "dead_lettered"]

_log = structlog.get_logger(__name__)


async def bridge_file(
    s3: Any, producer: RecordProducer, obj: LogObject, *, source: str
) -> FileOutcome:
    """Produce every record of one file and wait for the acks, or dead-letter it.

    Digests and Insights files are skipped. Raises S3Unavailable or
    KafkaUnavailable when the file should be tried again later.
    """
    kind = key_kind(obj.key)
    if kind != "log":
        FILES_SKIPPED.labels(kind).inc()
        _log.debug("bridge.file_skipped", bucket=obj.bucket, key=obj.key, kind=kind)
        return "skipped"

    try:
        unwrapped = await fetch_log_file(s3, obj)
    except ObjectUnreadable as exc:
        await _dead_letter(producer, obj, exc.reason, exc.detail, source)
        return "dead_lettered"

    encoded = encode_records(
        unwrapped.records, fallback_account=account_from_key(obj.key)
    )
    await producer.send_records(encoded.messages, source=source)
    if encoded.unencodable:
        await _dead_letter_records(producer, obj, encoded.unencodable, source)
    if unwrapped.failures:
        # Some records of the file were unreadable: keep them, the rest went on.
        failure = unwrapped.failures[0]
        detail = f"{len(unwrapped.failures)} unreadable items; first: {failure.detail}"
        await _dead_letter(producer, obj, failure.reason, detail, source)
    FILES_BRIDGED.labels(source).inc()
    _log.info(
        "bridge.file_bridged",
        bucket=obj.bucket,
        key=obj.key,
        records=len(encoded.messages),
        skipped=unwrapped.skipped,
    )
    return "bridged"


async def _dead_letter(
    producer: RecordProducer, obj: LogObject, reason: str, detail: str, source: str
) -> None:
    FAILURES.labels(reason).inc()
    _log.warning(
        "bridge.file_unreadable", bucket=obj.bucket, key=obj.key, reason=reason
    )
    await producer.send_dead_letter(
        source=source, reason=reason, detail=detail, bucket=obj.bucket, key=obj.key
    )


async def _dead_letter_records(
    producer: RecordProducer,
    obj: LogObject,
    records: list[Unencodable],
    source: str,
) -> None:
    """One dead letter per record the file held but Kafka must not receive."""
    FAILURES.labels("unencodable_record").inc(len(records))
    _log.warning(
        "bridge.records_unencodable",
        bucket=obj.bucket,
        key=obj.key,
        records=len(records),
        first_index=records[0].index,
        detail=records[0].detail,
    )
    letters = [
        {
            "source": source,
            "reason": "unencodable_record",
            "detail": record.detail,
            "bucket": obj.bucket,
            "key": obj.key,
            "record_index": record.index,
            "event_id": record.event_id,
        }
        for record in records
    ]
    await producer.send_dead_letters(letters)
