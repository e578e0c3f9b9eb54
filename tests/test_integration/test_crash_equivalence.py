"""Killing the consumer with SIGKILL at random moments changes no stored alert.

The same stream is consumed once without interruption (into SQLite, the
reference) and once while `trailwarden run` is killed and restarted several
times, into SQLite or PostgreSQL; the alerts must be equal field by field.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
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
KILLS = 4


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def crash_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crash.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_crash_sigkill_restarts_store_same_alerts_as_clean_run(
    kafka_bootstrap: str,
    topic_factory: Callable[..., Awaitable[str]],
    produce: Callable[..., Awaitable[None]],
    session_stream: Any,
    reference_alerts: Alerts,
    run_process: Callable[..., Awaitable[Any]],
    stored_alerts: Callable[[str], Awaitable[Alerts]],
    checkpoint_offsets: Callable[[str, str, int], Awaitable[list[int]]],
    settle: Settle,
    wait_until: Callable[..., Awaitable[Any]],
    crash_db: str,
) -> None:
    rng = random.Random()
    topic = await topic_factory(PARTITIONS)
    crash = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "policy_file": session_stream.policy_file,
        "kafka_session_timeout_seconds": 2,
        "kafka_topic": topic,
        "kafka_group_id": f"crash-{topic}",
        "database_url": crash_db,
        "kafka_max_batch_records": 3,
    }

    # The stream arrives in chunks, and each process is killed at a random
    # moment after it made progress.
    progress_at_kill: list[int] = []
    for chunk in chunked(session_stream.partitions, KILLS):
        await produce_stream(produce, topic, chunk)
        before = sum(await checkpoint_offsets(crash_db, topic, PARTITIONS))
        process = await run_process(**crash)

        async def progressed(before: int = before) -> int | None:
            total = sum(await checkpoint_offsets(crash_db, topic, PARTITIONS))
            return total if total > before else None

        await wait_until(progressed, 40)
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        process.kill()
        await process.wait()
        progress_at_kill.append(
            sum(await checkpoint_offsets(crash_db, topic, PARTITIONS))
        )

    last = await run_process(**crash)
    await settle(crash_db, topic, ends(session_stream))
    assert await last.stop() == 0, last.log()

    assert min(progress_at_kill) < sum(ends(session_stream))
    assert_same_alerts(await stored_alerts(crash_db), reference_alerts)
