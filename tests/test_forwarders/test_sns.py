"""SNS: subject and size limits, then publishes to a moto server, read back via SQS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import boto3
import orjson
import pytest

from service.alerts import AlertChange
from service.forwarders.destinations import SnsDestination
from service.forwarders.outbox import Delivery, MemoryOutbox, outbox_rows
from service.forwarders.sns import (
    MAX_MESSAGE_BYTES,
    SnsSender,
    fit_message,
    message_attributes,
    sns_subject,
)


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Acme did X", "[HIGH] Acme did X"),
        ("line one\nline two\r\tend", "[HIGH] line one line two end"),
        ("Zürich café → bucket", "[HIGH] Zurich cafe bucket"),
    ],
)
def test_sns_subject_one_ascii_line(title: str, expected: str) -> None:
    assert sns_subject({"severity": "high", "title": title}) == expected


def test_sns_subject_long_title_cut_below_100() -> None:
    subject = sns_subject({"severity": "critical", "title": "x" * 500})

    assert len(subject) == 99
    assert subject.endswith("...")


def test_fit_message_trims_details_and_marks_truncated() -> None:
    payload = {
        "id": "a",
        "title": "t",
        "details": {"event_ids": [f"event-{n:08d}" for n in range(100_000)], "k": 1},
    }

    body = fit_message(payload, 200_000)

    message = orjson.loads(body)
    assert len(body) <= 200_000
    assert message["truncated"] is True
    assert 0 < len(message["details"]["event_ids"]) < 100_000
    assert message["details"]["event_ids"][0] == "event-00000000"


def test_fit_message_small_payload_untouched() -> None:
    payload = {"id": "a", "details": {"k": "v"}}

    assert orjson.loads(fit_message(payload, 1000)) == payload


def test_message_attributes_leave_out_missing_third_party() -> None:
    attributes = message_attributes(
        {"severity": "high", "detector": "unregistered-external-account"}
    )

    assert set(attributes) == {"severity", "detector"}


# Against a moto server over HTTP


@pytest.fixture
def aws(aws_endpoint: str, aws_env: dict[str, str]) -> Callable[[str], Any]:
    def client(service: str) -> Any:
        return boto3.client(service, region_name="us-east-1", endpoint_url=aws_endpoint)

    return client


@pytest.fixture
def subscribed_queue(aws) -> Callable[[bool], tuple[str, str]]:
    """A topic (FIFO or not) with an SQS queue subscribed: (topic arn, queue url)."""
    sns, sqs = aws("sns"), aws("sqs")
    counter = iter(range(1000))

    def make(fifo: bool) -> tuple[str, str]:
        n = next(counter)
        suffix = ".fifo" if fifo else ""
        attributes = {"FifoTopic": "true", "ContentBasedDeduplication": "false"}
        topic = sns.create_topic(
            Name=f"alerts-{n}{suffix}", Attributes=attributes if fifo else {}
        )["TopicArn"]
        queue_attributes = {"FifoQueue": "true"} if fifo else {}
        queue = sqs.create_queue(
            QueueName=f"inbox-{n}{suffix}", Attributes=queue_attributes
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(
            QueueUrl=queue, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        return topic, queue

    return make


@pytest.fixture
async def sns_sender(aws_endpoint: str) -> AsyncIterator[Callable[[str], SnsSender]]:
    senders: list[SnsSender] = []

    def make(topic_arn: str) -> SnsSender:
        destination = SnsDestination(
            name="topic", type="sns", topic_arn=topic_arn, endpoint_url=aws_endpoint
        )
        sender = SnsSender(destination)
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        await sender.close()


async def _delivery(make_alert, sender: SnsSender, **overrides: Any) -> Delivery:
    outbox = MemoryOutbox()
    change = AlertChange(make_alert(1, **overrides), created=True)
    await outbox.add(outbox_rows([change], [sender.destination]))
    (delivery,) = (await outbox.list(None, 1, None)).items
    return delivery


def _receive(aws, queue_url: str) -> list[dict[str, Any]]:
    messages = (
        aws("sqs")
        .receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=5)
        .get("Messages", [])
    )
    return [json.loads(message["Body"]) for message in messages]


@pytest.mark.integration
async def test_publish_reaches_subscribed_queue_with_attributes(
    aws, subscribed_queue, sns_sender, make_alert
) -> None:
    topic, queue = subscribed_queue(False)
    sender = sns_sender(topic)
    delivery = await _delivery(make_alert, sender, title="Acme\nat night " + "z" * 200)

    await sender.send(delivery)

    (envelope,) = _receive(aws, queue)
    assert len(envelope["Subject"]) <= 99
    assert "\n" not in envelope["Subject"]
    attributes = {k: v["Value"] for k, v in envelope["MessageAttributes"].items()}
    assert attributes == {
        "severity": "high",
        "detector": "mfa-missing",
        "third_party": "acme-analytics",
    }
    assert orjson.loads(envelope["Message"])["id"] == "alert-0001"


@pytest.mark.integration
async def test_publish_huge_evidence_delivered_trimmed(
    aws, subscribed_queue, sns_sender, make_alert
) -> None:
    topic, queue = subscribed_queue(False)
    sender = sns_sender(topic)
    event_ids = [f"{n:036d}" for n in range(30_000)]  # over 1 MB of event ids
    delivery = await _delivery(make_alert, sender, details={"event_ids": event_ids})

    await sender.send(delivery)

    (envelope,) = _receive(aws, queue)
    message = envelope["Message"]
    assert len(message.encode()) < MAX_MESSAGE_BYTES
    body = orjson.loads(message)
    assert body["truncated"] is True
    assert body["details"]["event_ids"][0] == event_ids[0]


@pytest.mark.integration
async def test_publish_fifo_topic_uses_group_and_delivery_id(
    aws, subscribed_queue, sns_sender, make_alert
) -> None:
    topic, queue = subscribed_queue(True)
    sender = sns_sender(topic)
    delivery = await _delivery(make_alert, sender)

    request = sender.request(delivery)
    await sender.send(delivery)
    await sender.send(delivery)  # a retry after a lost answer: deduplicated

    assert request["MessageGroupId"] == "acme-analytics"
    assert request["MessageDeduplicationId"] == delivery.id
    messages = _receive(aws, queue)
    assert len(messages) == 1
    assert orjson.loads(messages[0]["Message"])["id"] == "alert-0001"
