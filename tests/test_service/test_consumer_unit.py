"""decode_batch: the consumer's pure step from fetched messages to a batch."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from detectors.detector import Finding
from detectors.engine import DetectionEngine
from detectors.third_parties import load_policy
from service.consumer import decode_batch
from service.records import CloudTrailRecord

DATA = Path(__file__).parents[1] / "data" / "integration"
RECEIVED = datetime(2024, 8, 1, tzinfo=UTC)
TP = TopicPartition("cloudtrail", 3)


@pytest.fixture(scope="module")
def good_records() -> list[bytes]:
    path = DATA / "stratus_ec2_get_password_data.jsonl"
    return path.read_bytes().splitlines()


@pytest.fixture
def engine() -> DetectionEngine:
    return DetectionEngine(load_policy(DATA / "policy.yaml"))


def message(offset: int, value: bytes | None) -> ConsumerRecord[bytes, bytes]:
    size = 0 if value is None else len(value)
    return ConsumerRecord(
        TP.topic, TP.partition, offset, 0, 0, None, value, None, 0, size, ()
    )


def failures(reason: str) -> float:
    labels = {"reason": reason}
    value = REGISTRY.get_sample_value("trailwarden_decode_failures_total", labels)
    return value or 0.0


def test_decode_batch_good_records_findings_and_next_offsets(
    engine: DetectionEngine, good_records: list[bytes]
) -> None:
    fetched = {TP: [message(10, good_records[0]), message(11, good_records[1])]}

    batch = decode_batch(fetched, lambda tp: engine, RECEIVED)

    assert batch.messages == 2
    assert batch.records == 2
    assert {f.detector for f in batch.findings} == {
        "high-risk-action",
        "action-not-allowed",
        "source-network-not-allowed",
    }
    assert batch.dead_letters == []
    assert batch.offsets == {TP: 12}


def test_decode_batch_bad_message_dead_letter_then_goes_on(
    engine: DetectionEngine, good_records: list[bytes]
) -> None:
    garbage = b"\x00\xffnot json at all"
    before = failures("not_json")
    messages = [message(0, good_records[0]), message(1, garbage)]
    messages.append(message(2, good_records[1]))
    fetched = {TP: messages}

    with capture_logs() as logs:
        batch = decode_batch(fetched, lambda tp: engine, RECEIVED)

    assert batch.records == 2
    (letter,) = batch.dead_letters
    assert (letter.source, letter.partition, letter.offset) == ("cloudtrail", 3, 1)
    assert letter.reason == "not_json"
    assert letter.payload == garbage
    assert letter.received_at == RECEIVED
    assert failures("not_json") == before + 1
    (logged,) = [log for log in logs if log["event"] == "record.undecodable"]
    assert logged["topic"] == "cloudtrail"
    assert (logged["partition"], logged["offset"]) == (3, 1)
    assert logged["reason"] == "not_json"
    assert batch.offsets == {TP: 3}


def test_decode_batch_tombstone_counted_empty(engine: DetectionEngine) -> None:
    before = failures("empty")

    batch = decode_batch({TP: [message(5, None)]}, lambda tp: engine, RECEIVED)

    (letter,) = batch.dead_letters
    assert letter.reason == "empty"
    assert letter.payload == b""
    assert failures("empty") == before + 1
    assert batch.offsets == {TP: 6}


def test_decode_batch_truncated_gzip_dead_letter_whole_payload(
    engine: DetectionEngine, good_records: list[bytes]
) -> None:
    truncated = gzip.compress(b"".join(good_records))[:40]

    batch = decode_batch({TP: [message(0, truncated)]}, lambda tp: engine, RECEIVED)

    (letter,) = batch.dead_letters
    assert letter.reason == "bad_gzip"
    assert letter.payload == truncated


class _BrokenEngine:
    def process(self, record: CloudTrailRecord) -> list[Finding]:
        raise RuntimeError("detector bug")


def test_decode_batch_detector_error_kept_and_batch_continues(
    good_records: list[bytes],
) -> None:
    broken = _BrokenEngine()
    fetched = {TP: [message(7, good_records[0]), message(8, good_records[1])]}

    with capture_logs() as logs:
        batch = decode_batch(fetched, lambda tp: broken, RECEIVED)  # type: ignore[arg-type,return-value]

    assert [letter.reason for letter in batch.dead_letters] == ["detection_failed"] * 2
    assert [letter.offset for letter in batch.dead_letters] == [7, 8]
    assert batch.offsets == {TP: 9}
    assert sum(log["event"] == "record.detection_failed" for log in logs) == 2


def test_decode_batch_engine_per_partition(
    engine: DetectionEngine, good_records: list[bytes]
) -> None:
    other = TopicPartition("cloudtrail", 4)
    asked: list[TopicPartition] = []

    def engine_for(tp: TopicPartition) -> DetectionEngine:
        asked.append(tp)
        return engine

    decode_batch(
        {TP: [message(0, good_records[0])], other: [message(0, good_records[1])]},
        engine_for,
        RECEIVED,
    )

    assert asked == [TP, other]
