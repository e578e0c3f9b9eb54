"""Two replicas in one group over one PostgreSQL: moving partitions loses nothing.

Two `trailwarden run` processes share a topic; one is stopped with SIGTERM while
the stream is still arriving and started again later. The alerts must equal
those of one uninterrupted process, field by field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
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


def owned(process: RunProcess) -> set[str]:
    """The partitions the process owns now, from its assigned and revoked events."""
    partitions: set[str] = set()
    for event in process.events("partitions.assigned", "partitions.revoked"):
        if event["event"] == "partitions.assigned":
            partitions |= set(event["partitions"])
        else:
            partitions -= set(event["partitions"])
    return partitions


async def test_rebalance_replica_stopped_and_restarted_same_alerts_as_one_process(
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
) -> None:
    topic = await topic_factory(PARTITIONS)
    replica = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "kafka_topic": topic,
        "kafka_group_id": f"replicas-{topic}",
        "kafka_session_timeout_seconds": 3,
        "kafka_max_batch_records": 3,
        "policy_file": session_stream.policy_file,
        "database_url": postgres_url,
    }
    first, second, third, fourth = chunked(session_stream.partitions, 4)

    async def progress() -> int:
        return sum(await checkpoint_offsets(postgres_url, topic, PARTITIONS))

    async def stored_by(process: RunProcess) -> bool:
        """The process moved the checkpoint of a partition it owns."""
        offsets = await checkpoint_offsets(postgres_url, topic, PARTITIONS)
        restored_at = {
            event["partition"]: event["next_offset"] or 0
            for event in process.events("partition.restored")
        }
        return any(
            offsets[int(partition.rsplit("/", 1)[1])] > restored_at.get(partition, 0)
            for partition in owned(process)
        )

    # Both replicas own partitions and store checkpoints for them.
    a = await run_process(**replica)
    b = await run_process(**replica)
    await wait_until(lambda: owned(a) and owned(b), 40)
    await produce_stream(produce, topic, first)
    await wait_until(lambda: stored_by(a), 40)
    await wait_until(lambda: stored_by(b), 40)

    # b leaves mid-stream: a takes its partitions over from b's checkpoints.
    await produce_stream(produce, topic, second)
    assert await b.stop() == 0, b.log()
    at_leave = await progress()
    await wait_until(lambda: len(owned(a)) == PARTITIONS, 40)
    await produce_stream(produce, topic, third)

    # b comes back as a new process and is given partitions again.
    b_again = await run_process(**replica)
    await wait_until(lambda: owned(b_again), 40)
    await produce_stream(produce, topic, fourth)
    await settle(postgres_url, topic, ends(session_stream))
    assert await stored_by(b_again)
    assert await a.stop() == 0, a.log()
    assert await b_again.stop() == 0, b_again.log()

    assert at_leave < sum(ends(session_stream))
    assert_same_alerts(await stored_alerts(postgres_url), reference_alerts)
