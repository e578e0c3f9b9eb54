"""A partition whose log starts again below its checkpoint is read from its start.

That happens when a topic is deleted and created again, or a broker loses its
data: skipping offsets up to the old checkpoint would skip every new record.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fixtures_process import RunProcess

from service.alerts import AlertQuery
from service.store import open_store

pytestmark = pytest.mark.integration

DATA = Path(__file__).parents[1] / "data" / "integration"


def fresh_records(count: int) -> list[bytes]:
    """The first `count` stratus records, each with a new eventID."""
    lines = (DATA / "stratus_ec2_get_password_data.jsonl").read_bytes().splitlines()
    records = []
    for line in lines[:count]:
        record = orjson.loads(line)
        record["eventID"] = str(uuid.uuid4())
        records.append(orjson.dumps(record))
    return records


async def alert_counts(url: str) -> dict[str, int]:
    store = open_store(url)
    await store.start()
    try:
        page = await store.list_alerts(AlertQuery(), limit=500, cursor=None)
    finally:
        await store.close()
    return {alert.detector: alert.count for alert in page.items}


async def recreate(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()


async def test_log_restarted_below_checkpoint_new_records_still_processed(
    kafka_bootstrap: str,
    topic_factory: Callable[..., Awaitable[str]],
    produce: Callable[..., Awaitable[None]],
    run_process: Callable[..., Awaitable[RunProcess]],
    checkpoint_offsets: Callable[[str, str, int], Awaitable[list[int]]],
    wait_until: Callable[..., Awaitable[Any]],
    tmp_path: Path,
) -> None:
    topic = await topic_factory()
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    settings = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "kafka_topic": topic,
        "kafka_group_id": f"restart-{uuid.uuid4().hex[:8]}",
        "database_url": url,
        "policy_file": DATA / "policy.yaml",
        "kafka_session_timeout_seconds": 2,
    }
    await produce(topic, fresh_records(6))
    first = await run_process(**settings)
    await wait_until(lambda: _offsets_are(checkpoint_offsets, url, topic, 6), 30)
    assert await first.stop() == 0
    before = await alert_counts(url)

    await recreate(kafka_bootstrap, topic)
    await produce(topic, fresh_records(2))
    second = await run_process(**settings)
    await wait_until(lambda: _offsets_are(checkpoint_offsets, url, topic, 2), 30)
    assert await second.stop() == 0
    after = await alert_counts(url)

    assert before
    assert after == {detector: count + 2 for detector, count in before.items()}
    (restarted,) = second.events("partition.log_restarted")
    assert (restarted["checkpoint"], restarted["log_end"]) == (6, 2)


async def _offsets_are(
    checkpoint_offsets: Callable[[str, str, int], Awaitable[list[int]]],
    url: str,
    topic: str,
    offset: int,
) -> bool:
    return await checkpoint_offsets(url, topic, 1) == [offset]
