"""`bridge s3` against moto (S3, SQS, SNS over HTTP) and the real broker."""

from __future__ import annotations

import asyncio
import copy
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote_plus

import pytest
from bridge_helpers import STRATUS_ACCOUNT, LogFile, event_ids, log_key, nested
from fixtures_aws import AWS_ACCOUNT_ID, AWS_REGION
from prometheus_client import REGISTRY

from service.bridge.runner import run_sqs_bridge
from service.bridge.settings import BridgeSettings

pytestmark = pytest.mark.integration

DAY = "2024-07-30"


def _skipped(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "trailwarden_bridge_files_skipped_total", {"reason": reason}
    )
    return value or 0.0


def _failures(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "trailwarden_bridge_failures_total", {"reason": reason}
    )
    return value or 0.0


async def _bridge_until_drained(
    settings: BridgeSettings,
    queue_url: str,
    drained: Callable[[str], bool],
    wait_until: Callable[..., Awaitable[Any]],
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_sqs_bridge(settings, queue_url, stop))
    try:
        await wait_until(lambda: task.done() or drained(queue_url), 40)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_sqs_bridge_every_form_produces_each_record_once_keyed_by_account(
    aws_client: Callable[[str], Any],
    bucket: str,
    queue_url: str,
    upload: Callable[[LogFile], None],
    trail_records: dict[str, list[dict[str, Any]]],
    topic_factory: Callable[..., Awaitable[str]],
    bridge_settings: Callable[..., BridgeSettings],
    queue_drained: Callable[[str], bool],
    read_topic: Callable[[str], Awaitable[list[Any]]],
    wait_until: Callable[..., Awaitable[Any]],
) -> None:
    """S3 event, S3 event in SNS, CloudTrail's message (raw and in SNS), EventBridge."""
    stratus, otel = trail_records["stratus"], trail_records["otel"]
    files = [
        LogFile(log_key(STRATUS_ACCOUNT, "us-east-1", DAY, "s3 event"), stratus[:3]),
        LogFile(log_key(STRATUS_ACCOUNT, "us-east-1", DAY, "via+sns"), stratus[3:]),
        LogFile(log_key("123456789012", "us-east-1", DAY, "cloudtrail"), otel[:4]),
        LogFile(log_key("111122223333", "eu-west-1", DAY, "eventbridge"), otel[4:]),
    ]
    digest = LogFile(
        "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2024/07/30/"
        "123456789012_CloudTrail-Digest_us-east-1_t_us-east-1_20240730T0000Z.json.gz",
        [],
    )
    insight = LogFile(
        "AWSLogs/123456789012/CloudTrail-Insight/us-east-1/2024/07/30/i.json.gz",
        [otel[3]],
    )
    for file in [*files[1:], digest, insight]:
        upload(file)
    sqs, sns, s3 = aws_client("sqs"), aws_client("sns"), aws_client("s3")
    queue_arn = (
        f"arn:aws:sqs:{AWS_REGION}:{AWS_ACCOUNT_ID}:{queue_url.rsplit('/', 1)[1]}"
    )
    topic_arn = sns.create_topic(Name=queue_url.rsplit("/", 1)[1])["TopicArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    # 1. A real S3 event notification (moto also sends its s3:TestEvent first).
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )
    upload(files[0])
    # 2. The same kind of event, published through SNS, key URL-encoded by hand.
    s3_event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket},
                    "object": {"key": quote_plus(files[1].key, safe="/")},
                },
            }
        ]
    }
    sns.publish(TopicArn=topic_arn, Message=json.dumps(s3_event))
    # 3. CloudTrail's own SNS message, naming a log file, a digest and Insights.
    keys = [files[2].key, digest.key, insight.key]
    sns.publish(
        TopicArn=topic_arn,
        Message=json.dumps({"s3Bucket": bucket, "s3ObjectKey": keys}),
    )
    # 4. S3 "Object Created" through EventBridge.
    event = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {
            "bucket": {"name": bucket},
            "object": {"key": quote_plus(files[3].key, safe="/")},
        },
    }
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(event))
    topic = await topic_factory(3)
    dead_letters = await topic_factory()
    digests, insights = _skipped("digest"), _skipped("insight")

    await _bridge_until_drained(
        bridge_settings(topic, dead_letters), queue_url, queue_drained, wait_until
    )

    messages = await read_topic(topic)
    expected = [r["eventID"] for f in files for r in f.records if "eventName" in r]
    assert event_ids(messages) == sorted(expected)
    for message in messages:
        record = json.loads(message.value)
        account = record.get("recipientAccountId", STRATUS_ACCOUNT)
        assert message.key == account.encode()
    by_key = {message.key: message.partition for message in messages}
    assert all(by_key[m.key] == m.partition for m in messages)
    assert await read_topic(dead_letters) == []
    assert (_skipped("digest"), _skipped("insight")) == (digests + 1, insights + 1)


async def test_sqs_bridge_unreadable_input_dead_lettered_and_message_deleted(
    aws_client: Callable[[str], Any],
    bucket: str,
    queue_url: str,
    upload: Callable[[LogFile], None],
    trail_records: dict[str, list[dict[str, Any]]],
    topic_factory: Callable[..., Awaitable[str]],
    bridge_settings: Callable[..., BridgeSettings],
    queue_drained: Callable[[str], bool],
    read_topic: Callable[[str], Awaitable[list[Any]]],
    wait_until: Callable[..., Awaitable[Any]],
) -> None:
    """A missing object, a file that is not CloudTrail, a body that is not JSON."""
    good = LogFile(log_key(STRATUS_ACCOUNT, "us-east-1", DAY, "good"), [])
    missing = log_key(STRATUS_ACCOUNT, "us-east-1", DAY, "missing")
    garbage = log_key(STRATUS_ACCOUNT, "us-east-1", DAY, "garbage")
    s3, sqs = aws_client("s3"), aws_client("sqs")
    upload(LogFile(good.key, trail_records["stratus"][:1]))
    s3.put_object(Bucket=bucket, Key=garbage, Body=b"\x1f\x8bnot gzip at all")
    message = {"s3Bucket": bucket, "s3ObjectKey": [missing, garbage, good.key]}
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
    sqs.send_message(QueueUrl=queue_url, MessageBody="not json")
    topic, dead_letters = await topic_factory(), await topic_factory()

    await _bridge_until_drained(
        bridge_settings(topic, dead_letters), queue_url, queue_drained, wait_until
    )

    letters = [json.loads(m.value) for m in await read_topic(dead_letters)]
    reasons = Counter((letter["reason"], letter.get("key")) for letter in letters)
    assert reasons == Counter(
        {
            ("no_such_key", missing): 1,
            ("bad_gzip", garbage): 1,
            ("bad_notification", None): 1,
        }
    )
    assert all(letter["detail"] for letter in letters)
    assert event_ids(await read_topic(topic)) == [
        trail_records["stratus"][0]["eventID"]
    ]


async def test_sqs_bridge_record_nested_too_deeply_dead_lettered_rest_produced(
    aws_client: Callable[[str], Any],
    bucket: str,
    queue_url: str,
    upload: Callable[[LogFile], None],
    trail_records: dict[str, list[dict[str, Any]]],
    topic_factory: Callable[..., Awaitable[str]],
    bridge_settings: Callable[..., BridgeSettings],
    queue_drained: Callable[[str], bool],
    read_topic: Callable[[str], Awaitable[list[Any]]],
    wait_until: Callable[..., Awaitable[Any]],
) -> None:
    """orjson parses 1023 levels but writes 254: such a record cannot go to Kafka."""
    stratus = trail_records["stratus"]
    deep = copy.deepcopy(stratus[1])
    deep["requestParameters"] = {"roleSessionName": nested(300)}
    file = LogFile(
        log_key(STRATUS_ACCOUNT, "us-east-1", DAY, "deep"),
        [stratus[0], deep, *stratus[2:]],
    )
    other = LogFile(log_key(STRATUS_ACCOUNT, "us-east-1", DAY, "other"), stratus[:1])
    upload(file)
    upload(other)
    sqs = aws_client("sqs")
    for key in (file.key, other.key):
        message = {"s3Bucket": bucket, "s3ObjectKey": [key]}
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
    topic, dead_letters = await topic_factory(), await topic_factory()
    unencodable = _failures("unencodable_record")

    await _bridge_until_drained(
        bridge_settings(topic, dead_letters), queue_url, queue_drained, wait_until
    )

    produced = event_ids(await read_topic(topic))
    expected = [r["eventID"] for r in [*stratus[:1], *stratus[2:], *stratus[:1]]]
    assert produced == sorted(expected)
    letters = [json.loads(m.value) for m in await read_topic(dead_letters)]
    assert [
        {k: letter[k] for k in ("reason", "bucket", "key", "record_index", "event_id")}
        for letter in letters
    ] == [
        {
            "reason": "unencodable_record",
            "bucket": bucket,
            "key": file.key,
            "record_index": 1,
            "event_id": deep["eventID"],
        }
    ]
    assert "nested" in letters[0]["detail"]
    assert _failures("unencodable_record") == unencodable + 1


async def test_sqs_bridge_deletion_counted_not_created_test_event_as_test_event(
    aws_client: Callable[[str], Any],
    bucket: str,
    queue_url: str,
    topic_factory: Callable[..., Awaitable[str]],
    bridge_settings: Callable[..., BridgeSettings],
    queue_drained: Callable[[str], bool],
    read_topic: Callable[[str], Awaitable[list[Any]]],
    wait_until: Callable[..., Awaitable[Any]],
) -> None:
    """moto's own notifications: the s3:TestEvent on setup, then a delete."""
    s3 = aws_client("s3")
    key = log_key(STRATUS_ACCOUNT, "us-east-1", DAY, "deleted")
    s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
    queue_arn = (
        f"arn:aws:sqs:{AWS_REGION}:{AWS_ACCOUNT_ID}:{queue_url.rsplit('/', 1)[1]}"
    )
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": queue_arn, "Events": ["s3:ObjectRemoved:*"]}
            ]
        },
    )
    s3.delete_object(Bucket=bucket, Key=key)
    topic, dead_letters = await topic_factory(), await topic_factory()
    before = {reason: _skipped(reason) for reason in ("not_created", "test_event")}

    await _bridge_until_drained(
        bridge_settings(topic, dead_letters), queue_url, queue_drained, wait_until
    )

    after = {reason: _skipped(reason) for reason in ("not_created", "test_event")}
    assert after == {reason: count + 1 for reason, count in before.items()}
    assert await read_topic(topic) == []
    assert await read_topic(dead_letters) == []
