"""The whole shared corpus, replayed from disk and consumed from Kafka, gives the
same alerts: the two paths share one decoder and one engine."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from service.alerts import Alert, AlertQuery
from service.inputs import iter_input_files, read_input
from service.store import open_store

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).parents[3] / "shared" / "corpus"
POLICY = Path(__file__).parents[1] / "data" / "corpus-policy.yaml"


def _comparable(alert: Alert) -> tuple[Any, ...]:
    return (
        alert.id,
        alert.detector,
        alert.severity,
        alert.third_party,
        alert.account_id,
        alert.actor,
        alert.first_seen,
        alert.last_seen,
        alert.count,
        tuple(alert.event_ids),
    )


async def _stored_alerts(url: str) -> set[tuple[Any, ...]]:
    store = open_store(url)
    await store.start()
    try:
        alerts: list[Alert] = []
        cursor = None
        while True:
            page = await store.list_alerts(AlertQuery(), limit=500, cursor=cursor)
            alerts.extend(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    finally:
        await store.close()
    return {_comparable(alert) for alert in alerts}


async def _committed(bootstrap: str, topic: str, group: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0)) or 0
    finally:
        await consumer.stop()


async def _replay(db_url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "replay", "--policy", str(POLICY),
        "--db", db_url, str(CORPUS),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no shared corpus at {CORPUS}")
async def test_corpus_replay_and_kafka_consumption_store_equal_alerts(
    kafka_bootstrap: str,
    topic_factory: Callable[..., Awaitable[str]],
    produce: Callable[..., Awaitable[None]],
    tmp_path: Path,
    wait_until: Callable[..., Awaitable[Any]],
    free_port: Callable[[], int],
) -> None:
    """Every corpus file as one Kafka message, in replay's order, on one partition."""
    replay_url = f"sqlite:///{tmp_path / 'replay.db'}"
    run_url = f"sqlite:///{tmp_path / 'run.db'}"
    files = list(iter_input_files([CORPUS]))
    topic = await topic_factory()
    group = f"corpus-{uuid.uuid4().hex[:8]}"
    await produce(topic, [read_input(path) for path in files])
    await _replay(replay_url)

    env = {
        **os.environ,
        "TRAILWARDEN_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TRAILWARDEN_KAFKA_TOPIC": topic,
        "TRAILWARDEN_KAFKA_GROUP_ID": group,
        "TRAILWARDEN_DATABASE_URL": run_url,
        "TRAILWARDEN_POLICY_FILE": str(POLICY),
        "TRAILWARDEN_HTTP_PORT": str(free_port()),
        "TRAILWARDEN_LOG_FORMAT": "json",
    }
    with (tmp_path / "run.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", "run", env=env, stdout=log, stderr=log
        )
        try:
            await wait_until(
                lambda: _done(kafka_bootstrap, topic, group, len(files)), 90.0
            )
        finally:
            process.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(process.wait(), 60.0)
    replayed = await _stored_alerts(replay_url)
    consumed = await _stored_alerts(run_url)

    assert returncode == 0, (tmp_path / "run.log").read_text()
    assert len(replayed) > 10
    assert consumed == replayed


async def _done(bootstrap: str, topic: str, group: str, messages: int) -> bool:
    return await _committed(bootstrap, topic, group) >= messages
