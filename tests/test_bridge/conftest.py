"""Fixtures for the bridge tests: moto, CloudTrail log files, topic reading.

The log files are built from the Apache-2.0 corpus copies in tests/data; see
`trail_records`. The moto fixtures come from fixtures_aws (tests/conftest.py).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from bridge_helpers import DATA, LogFile
from fixtures_aws import AWS_REGION

from service.bridge.settings import BridgeSettings

ReadTopic = Callable[[str], Awaitable[list[ConsumerRecord]]]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI points the root logger at the runner's streams; put it back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level


@pytest.fixture
def trail_records() -> dict[str, list[dict[str, Any]]]:
    """Real records: six Stratus Red Team calls and the OTel collector's test file.

    The last Stratus record loses its recipientAccountId, so the bridge must key
    it by the account in the object key.
    """
    lines = (DATA / "integration" / "stratus_ec2_get_password_data.jsonl").read_text()
    stratus = [json.loads(line) for line in lines.splitlines() if line.strip()]
    del stratus[-1]["recipientAccountId"]
    otel = json.loads((DATA / "envelopes" / "otel_records_file.json").read_text())
    return {"stratus": stratus, "otel": otel["Records"]}


@pytest.fixture
def bucket(aws_client: Callable[[str], Any]) -> str:
    name = f"trail-{uuid.uuid4().hex[:12]}"
    aws_client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def queue_url(aws_client: Callable[[str], Any]) -> str:
    name = f"trail-{uuid.uuid4().hex[:12]}"
    url: str = aws_client("sqs").create_queue(QueueName=name)["QueueUrl"]
    return url


@pytest.fixture
def upload(aws_client: Callable[[str], Any], bucket: str) -> Callable[[LogFile], None]:
    s3 = aws_client("s3")

    def put(file: LogFile) -> None:
        s3.put_object(Bucket=bucket, Key=file.key, Body=file.body())

    return put


@pytest.fixture
def bridge_settings(
    aws_env: dict[str, str], kafka_bootstrap: str
) -> Callable[..., BridgeSettings]:
    """Settings for an in-process bridge: short polls, no metrics port."""

    def make(topic: str, dead_letters: str, **overrides: Any) -> BridgeSettings:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "kafka_topic": topic,
            "bridge_dead_letter_topic": dead_letters,
            "aws_endpoint_url": aws_env["TRAILWARDEN_AWS_ENDPOINT_URL"],
            "aws_region": AWS_REGION,
            "bridge_wait_seconds": 1,
            "bridge_visibility_timeout_seconds": 5,
            "bridge_metrics_port": 0,
            "bridge_produce_timeout_seconds": 15,
        }
        return BridgeSettings(**{**values, **overrides})

    return make


@pytest.fixture
def queue_drained(
    aws_client: Callable[[str], Any],
) -> Callable[[str], bool]:
    """Whether a queue has no message left, visible or in flight."""
    sqs = aws_client("sqs")

    def drained(url: str) -> bool:
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        return all(value == "0" for value in attributes.values())

    return drained


@pytest.fixture
def read_topic(
    kafka_bootstrap: str,
) -> Callable[[str], Awaitable[list[ConsumerRecord]]]:
    """Everything in a topic up to its current end, all partitions."""

    async def read(topic: str) -> list[ConsumerRecord]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap, enable_auto_commit=False
        )
        await consumer.start()
        try:
            await consumer.topics()
            numbers = consumer.partitions_for_topic(topic) or {0}
            partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            found: list[ConsumerRecord] = []
            while [tp for tp, end in ends.items() if await _behind(consumer, tp, end)]:
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    found.extend(batch)
            return found
        finally:
            await consumer.stop()

    return read


async def _behind(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int) -> bool:
    return bool(await consumer.position(tp) < end)
