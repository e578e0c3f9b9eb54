"""A database outage or a broker restart mid-stream: not ready, then recovered.

While the part is down `/readyz` answers 503 and says which part; once it is
back the service carries on by itself, and the alerts equal those of an
uninterrupted run, field by field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures_outage import DatabaseOutage, RestartableBroker
from fixtures_process import RunProcess
from fixtures_reference import (
    Alerts,
    Settle,
    assert_same_alerts,
    chunked,
    ends,
    produce_stream,
)

pytestmark = pytest.mark.integration

PARTITIONS = 3


async def readiness(process: RunProcess) -> tuple[int, str] | None:
    """/readyz's status and reason ("" when ready); None while it does not answer."""
    response = await process.get("/readyz")
    if response is None:
        return None
    return response.status_code, response.json().get("reason", "")


async def not_ready_because(process: RunProcess, part: str) -> str | None:
    answer = await readiness(process)
    if answer is None or answer[0] != 503 or part not in answer[1]:
        return None
    return answer[1]


async def ready(process: RunProcess) -> bool:
    return await readiness(process) == (200, "")


async def test_outage_database_refuses_connections_recovers_same_alerts(
    kafka_bootstrap: str,
    topic_factory: Callable[..., Awaitable[str]],
    produce: Callable[..., Awaitable[None]],
    session_stream: Any,
    reference_alerts: Alerts,
    run_process: Callable[..., Awaitable[RunProcess]],
    stored_alerts: Callable[[str], Awaitable[Alerts]],
    checkpoint_offsets: Callable[[str, str, int], Awaitable[list[int]]],
    settle: Settle,
    wait_until: Callable[..., Awaitable[Any]],
    postgres_url: str,
    database_outage: DatabaseOutage,
) -> None:
    topic = await topic_factory(PARTITIONS)
    before, after = chunked(session_stream.partitions, 2)
    process = await run_process(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic=topic,
        kafka_group_id=f"outage-{topic}",
        kafka_max_batch_records=3,
        policy_file=session_stream.policy_file,
        database_url=postgres_url,
        store_retry_max_seconds=1,
    )
    await produce_stream(produce, topic, before)
    await settle(postgres_url, topic, [len(messages) for messages in before])

    # The database goes away while more records arrive.
    await database_outage.begin()
    await produce_stream(produce, topic, after)
    reason = await wait_until(lambda: not_ready_because(process, "alert store"), 30)
    await wait_until(lambda: len(process.events("batch.store_failed")) >= 2, 30)
    assert process.running, process.log()

    # It comes back: the service resumes by itself.
    await database_outage.end()
    await wait_until(lambda: ready(process), 30)
    await settle(postgres_url, topic, ends(session_stream))
    assert await process.stop() == 0, process.log()

    assert "alert store" in reason
    assert_same_alerts(await stored_alerts(postgres_url), reference_alerts)


async def test_outage_broker_killed_and_restarted_recovers_same_alerts(
    restartable_broker: RestartableBroker,
    session_stream: Any,
    reference_alerts: Alerts,
    run_process: Callable[..., Awaitable[RunProcess]],
    stored_alerts: Callable[[str], Awaitable[Alerts]],
    checkpoint_offsets: Callable[[str, str, int], Awaitable[list[int]]],
    settle: Settle,
    wait_until: Callable[..., Awaitable[Any]],
    tmp_path: Path,
) -> None:
    broker = restartable_broker
    topic = await broker.create_topic(PARTITIONS)
    url = f"sqlite:///{tmp_path / 'outage.db'}"
    first, second, third = chunked(session_stream.partitions, 3)
    await produce_stream(broker.produce, topic, first)
    process = await run_process(
        kafka_bootstrap_servers=broker.bootstrap,
        kafka_topic=topic,
        kafka_group_id=f"outage-{topic}",
        kafka_max_batch_records=3,
        kafka_session_timeout_seconds=3,
        policy_file=session_stream.policy_file,
        database_url=url,
    )
    await settle(url, topic, [len(messages) for messages in first])

    # The broker dies (no clean shutdown) right after taking more records, and
    # comes back on the same port and storage.
    await produce_stream(broker.produce, topic, second)
    broker.kill()
    reason = await wait_until(lambda: not_ready_because(process, "broker"), 30)
    at_restart = await checkpoint_offsets(url, topic, PARTITIONS)
    await broker.start()
    await produce_stream(broker.produce, topic, third)
    await wait_until(lambda: ready(process), 30)
    await settle(url, topic, ends(session_stream))
    assert await process.stop() == 0, process.log()

    assert "broker" in reason
    assert sum(at_restart) < sum(ends(session_stream))
    assert_same_alerts(await stored_alerts(url), reference_alerts)
