"""The whole service in-process against a real broker, SQLite, HTTP and webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from service.runtime import run_service
from service.settings import Settings
from service.store import open_store

pytestmark = pytest.mark.integration

DATA = Path(__file__).parents[1] / "data" / "integration"
TOKEN = "integration-token"
DETECTORS = {"high-risk-action", "action-not-allowed", "source-network-not-allowed"}

Produce = Callable[..., Awaitable[None]]
TopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture(scope="module")
def good_records() -> list[bytes]:
    return (DATA / "stratus_ec2_get_password_data.jsonl").read_bytes().splitlines()


@pytest.fixture
def make_settings(
    kafka_bootstrap: str, tmp_path: Path, free_port: Callable[[], int]
) -> Callable[..., Settings]:
    def make(topic: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "kafka_topic": topic,
            "kafka_group_id": f"group-{uuid.uuid4().hex[:8]}",
            "database_url": f"sqlite:///{tmp_path / 'alerts.db'}",
            "policy_file": DATA / "policy.yaml",
            "api_tokens": [TOKEN],
            "http_port": free_port(),
            "shutdown_timeout_seconds": 30,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    """run_service in the background; stopped the way a signal stops it."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(settings, stop=stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def api(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.http_port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )


async def alerts_over_http(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    try:
        response = await client.get("/alerts", params={"limit": 100})
    except httpx.TransportError:
        return []
    if response.status_code != 200:
        return []
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def committed(bootstrap: str, group: str, topic: str) -> tuple[int | None, int]:
    """The group's committed offset and the end offset of partition 0."""
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        offset = await consumer.committed(tp)
        end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    return offset, end


def failures(reason: str) -> float:
    labels = {"reason": reason}
    value = REGISTRY.get_sample_value("trailwarden_decode_failures_total", labels)
    return value or 0.0


async def test_run_records_become_alerts_over_http_and_webhook(
    make_settings: Callable[..., Settings],
    topic_factory: TopicFactory,
    produce: Produce,
    good_records: list[bytes],
    webhook_receiver: Any,
    wait_until: Callable[..., Awaitable[Any]],
) -> None:
    topic = await topic_factory()
    settings = make_settings(
        topic,
        webhook_urls=[webhook_receiver.url],
        webhook_secret=webhook_receiver.secret,
    )

    async with running(settings), api(settings) as client:
        await produce(topic, good_records)
        alerts = await wait_until(
            lambda: _with_count(alerts_over_http(client), len(good_records)), 30
        )
        hooks = await wait_until(
            lambda: (
                len(webhook_receiver.snapshot()) >= 3 and webhook_receiver.snapshot()
            )
        )
        unauthorised = await client.get("/alerts", headers={"Authorization": ""})

    assert {alert["detector"] for alert in alerts} == DETECTORS
    assert all(alert["third_party"] == "acme-analytics" for alert in alerts)
    assert len(hooks) == 3
    assert all(hook.signature_valid for hook in hooks)
    delivered = {orjson.loads(hook.body)["id"] for hook in hooks}
    assert delivered == {alert["id"] for alert in alerts}
    assert unauthorised.status_code == 401
    offset, end = await committed(
        settings.kafka_bootstrap_servers, settings.kafka_group_id, topic
    )
    assert offset == end == len(good_records)


async def _with_count(
    pending: Awaitable[list[dict[str, Any]]], count: int
) -> list[dict[str, Any]] | None:
    """The alerts once there are three, each merged from `count` records."""
    alerts = await pending
    if len(alerts) == 3 and all(alert["count"] == count for alert in alerts):
        return alerts
    return None


async def test_run_bad_input_counted_kept_and_later_records_processed(
    make_settings: Callable[..., Settings],
    topic_factory: TopicFactory,
    produce: Produce,
    good_records: list[bytes],
    wait_until: Callable[..., Awaitable[Any]],
) -> None:
    topic = await topic_factory()
    settings = make_settings(topic)
    bad = {
        "not_json": random.Random(7).randbytes(200),
        "bad_gzip": gzip.compress(b"\n".join(good_records))[:60],
        "wrong_shape": b"[1, 2, 3]",
        "not_cloudtrail": b'{"hello": "world"}',
    }
    # One line of binary noise: a random newline could make a stray digit a JSON line.
    huge = random.Random(5).randbytes(5 * 1024 * 1024).replace(b"\n", b" ")
    values = [good_records[0]]
    for good, poison in zip(good_records[1:], [*bad.values(), huge], strict=True):
        values += [poison, good]
    before = {reason: failures(reason) for reason in bad}

    async with running(settings) as service, api(settings) as client:
        await produce(topic, values)
        alerts = await wait_until(
            lambda: _with_count(alerts_over_http(client), len(good_records)), 30
        )
        assert not service.done()

    assert failures("not_json") == before["not_json"] + 2
    for reason in ("bad_gzip", "wrong_shape", "not_cloudtrail"):
        assert failures(reason) == before[reason] + 1
    last_event = orjson.loads(good_records[-1])["eventID"]
    assert all(last_event in alert["event_ids"] for alert in alerts)
    store = open_store(settings.database_url)
    await store.start()
    try:
        letters = await store.list_dead_letters(limit=10)
    finally:
        await store.close()
    assert sorted(letter.offset or 0 for letter in letters) == [1, 3, 5, 7, 9]
    by_offset = {letter.offset: letter for letter in letters}
    assert by_offset[1].payload == bad["not_json"]
    assert by_offset[3].reason == "bad_gzip"
    assert by_offset[9].size == len(huge)
    assert all(letter.source == topic for letter in letters)


async def test_run_restart_same_group_resumes_after_commit(
    make_settings: Callable[..., Settings],
    topic_factory: TopicFactory,
    produce: Produce,
    good_records: list[bytes],
    tmp_path: Path,
    wait_until: Callable[..., Awaitable[Any]],
) -> None:
    """A clean stop commits everything: the next run reads only new records."""
    topic = await topic_factory()
    first = make_settings(topic)
    second = make_settings(
        topic,
        kafka_group_id=first.kafka_group_id,
        database_url=f"sqlite:///{tmp_path / 'second.db'}",
    )
    await produce(topic, good_records[:-1])

    async with running(first), api(first) as client:
        await wait_until(
            lambda: _with_count(alerts_over_http(client), len(good_records) - 1), 30
        )
    async with running(second), api(second) as client:
        await produce(topic, good_records[-1:])
        alerts = await wait_until(lambda: _with_count(alerts_over_http(client), 1), 30)

    assert {alert["detector"] for alert in alerts} == DETECTORS
    offset, end = await committed(
        first.kafka_bootstrap_servers, first.kafka_group_id, topic
    )
    assert offset == end == len(good_records)


async def test_run_lag_and_counters_exported_on_metrics(
    make_settings: Callable[..., Settings],
    topic_factory: TopicFactory,
    produce: Produce,
    good_records: list[bytes],
    wait_until: Callable[..., Awaitable[Any]],
) -> None:
    topic = await topic_factory()
    settings = make_settings(topic)

    async def metrics_text() -> str | None:
        try:
            response = await client.get("/metrics")
        except httpx.TransportError:
            return None
        text = response.text
        lagging = 'trailwarden_consumer_lag_messages{partition="0"} 0.0' in text
        return text if lagging and "trailwarden_alerts_total" in text else None

    async with running(settings), api(settings) as client:
        await produce(topic, good_records)
        text = await wait_until(metrics_text, 30)
        ready = await client.get("/readyz")

    assert ready.status_code == 200
    assert (
        'trailwarden_alerts_total{detector="high-risk-action",severity="high"}' in text
    )
    delivered = (
        'trailwarden_deliveries_total{destination_type="webhook",outcome="delivered"}'
    )
    assert delivered in text
