"""The EventBridge API-destination endpoint, over ASGI, producing to the real broker."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from bridge_helpers import DATA, nested

from service.bridge.eventbridge import create_eventbridge_app
from service.bridge.producer import RecordProducer
from service.bridge.settings import BridgeSettings

pytestmark = pytest.mark.integration

SECRET = "s3cret-for-tests"
HEADER = "X-Trailwarden-Bridge-Secret"
EVENT = json.loads(
    (DATA / "envelopes" / "custodian_eventbridge_create_bucket.json").read_text()
)


@pytest.fixture
async def producer(
    kafka_bootstrap: str, topic_factory: Callable[..., Awaitable[str]]
) -> AsyncIterator[RecordProducer]:
    settings = BridgeSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic=await topic_factory(),
        bridge_produce_timeout_seconds=15,
    )
    producer = RecordProducer(settings)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@pytest.fixture
async def client(producer: RecordProducer) -> AsyncIterator[httpx.AsyncClient]:
    app = create_eventbridge_app(producer, secret=SECRET, header=HEADER)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
        yield http


async def test_eventbridge_good_event_in_kafka_before_200(
    client: httpx.AsyncClient,
    producer: RecordProducer,
    read_topic: Callable[[str], Awaitable[list[Any]]],
) -> None:
    second = {**EVENT, "detail": {**EVENT["detail"], "eventID": "second-event"}}

    one = await client.post("/", json=EVENT, headers={HEADER: SECRET})
    batch = await client.post("/events", json=[second], headers={HEADER: SECRET})

    assert (one.status_code, batch.status_code) == (200, 200)
    assert one.json() == {"accepted": 1, "skipped_insights": 0}
    messages = await read_topic(producer.topic)
    assert [json.loads(m.value) for m in messages] == [
        EVENT["detail"],
        second["detail"],
    ]
    # The custodian record has no recipientAccountId: the event's account keys it.
    assert {m.key for m in messages} == {EVENT["account"].encode()}


@pytest.mark.parametrize("headers", [{}, {HEADER: "wrong"}, {"X-Other": SECRET}])
async def test_eventbridge_missing_or_wrong_secret_401(
    client: httpx.AsyncClient,
    producer: RecordProducer,
    read_topic: Callable[[str], Awaitable[list[Any]]],
    headers: dict[str, str],
) -> None:
    response = await client.post("/", json=EVENT, headers=headers)

    assert response.status_code == 401
    assert HEADER in response.json()["error"]
    assert await read_topic(producer.topic) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "empty JSON array"),
        (b"[1]", "event 0: a JSON int"),
        (
            json.dumps({**EVENT, "detail-type": "Object Created"}).encode(),
            "via CloudTrail",
        ),
        (json.dumps({**EVENT, "detail": "x"}).encode(), "detail is not a JSON object"),
        (json.dumps({**EVENT, "detail": {"eventID": "x"}}).encode(), "no eventSource"),
    ],
)
async def test_eventbridge_malformed_400_with_reason(
    client: httpx.AsyncClient,
    producer: RecordProducer,
    read_topic: Callable[[str], Awaitable[list[Any]]],
    body: bytes,
    message: str,
) -> None:
    response = await client.post("/", content=body, headers={HEADER: SECRET})

    assert response.status_code == 400
    assert message in response.json()["error"]
    assert await read_topic(producer.topic) == []


async def test_eventbridge_event_too_deep_to_encode_400_nothing_produced(
    client: httpx.AsyncClient,
    producer: RecordProducer,
    read_topic: Callable[[str], Awaitable[list[Any]]],
) -> None:
    """orjson reads 1023 levels but writes 254: the whole request is refused."""
    deep = {**EVENT, "detail": {**EVENT["detail"], "requestParameters": nested(300)}}
    body = json.dumps([EVENT, deep]).encode()

    response = await client.post("/", content=body, headers={HEADER: SECRET})

    assert response.status_code == 400
    assert "event 1: detail: nested more than 254 levels" in response.json()["error"]
    assert await read_topic(producer.topic) == []


async def test_eventbridge_body_past_parser_depth_400_nested_too_deeply(
    client: httpx.AsyncClient,
) -> None:
    body = b"[" * 1100 + b"]" * 1100

    response = await client.post("/", content=body, headers={HEADER: SECRET})

    assert response.status_code == 400
    assert "body is nested too deeply" in response.json()["error"]


async def test_eventbridge_batch_sent_whole_before_acks_awaited(
    client: httpx.AsyncClient,
    producer: RecordProducer,
    read_topic: Callable[[str], Awaitable[list[Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every record of a request is queued before the first ack is awaited."""
    kafka = producer._producer
    assert kafka is not None
    send = kafka.send
    steps: list[str] = []

    async def spy(*args: Any, **kwargs: Any) -> Any:
        ack = await send(*args, **kwargs)
        steps.append("sent")
        ack.add_done_callback(lambda _ack: steps.append("acked"))
        return ack

    monkeypatch.setattr(kafka, "send", spy)
    events = [
        {**EVENT, "detail": {**EVENT["detail"], "eventID": f"event-{n}"}}
        for n in range(20)
    ]

    response = await client.post("/", json=events, headers={HEADER: SECRET})

    assert response.json() == {"accepted": 20, "skipped_insights": 0}
    assert steps == ["sent"] * 20 + ["acked"] * 20
    assert len(await read_topic(producer.topic)) == 20


async def test_eventbridge_kafka_not_acknowledging_503(
    client: httpx.AsyncClient, producer: RecordProducer
) -> None:
    await producer.stop()

    response = await client.post("/", json=EVENT, headers={HEADER: SECRET})

    assert response.status_code == 503


async def test_eventbridge_insights_event_skipped_200(
    client: httpx.AsyncClient,
) -> None:
    otel = json.loads((DATA / "envelopes" / "otel_records_file.json").read_text())
    insight = {
        "detail-type": "AWS Insight via CloudTrail",
        "detail": otel["Records"][3],
    }

    response = await client.post("/", json=insight, headers={HEADER: SECRET})

    assert response.json() == {"accepted": 0, "skipped_insights": 1}


async def test_eventbridge_health_and_metrics_open(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    metrics = await client.get("/metrics")

    assert health.json() == {"status": "ok"}
    assert "trailwarden_bridge_records_bridged_total" in metrics.text


async def test_record_producer_auto_idempotence_refused_no_aiokafka_error(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Tansu refuses InitProducerId; our warning says so, aiokafka's ERROR is gone."""
    producer = RecordProducer(BridgeSettings(kafka_bootstrap_servers=kafka_bootstrap))

    with caplog.at_level(logging.DEBUG, logger="aiokafka"):
        await producer.start()
    await producer.stop()

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == []
