"""Detector state stays bounded on a long stream of sessions that expire.

Months of event time, thousands of AssumeRole + call pairs through `trailwarden
run`: the stored state entries never approach the number of sessions, and the
`trailwarden_state_entries` gauge agrees with what is stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fixtures_process import RunProcess
from fixtures_reference import produce_stream
from fixtures_stream import OUR_ACCOUNTS, VENDOR_ACCOUNT, expiring_sessions
from prometheus_client.parser import text_string_to_metric_families

from service.store import open_store

pytestmark = pytest.mark.integration

SESSIONS = 1000  # per account: 3,000 sessions, 6,000 records, ~83 days
SPACING = timedelta(hours=2)
RECORDS_PER_FILE = 50
# Seen ids live 24 hours and sessions 15 minutes: about 30 entries per partition.
BOUND = 3 * SESSIONS // 20

# The sessions are allowed: no findings, only state.
POLICY = f"""
organization:
  accounts: {list(OUR_ACCOUNTS)}
third_parties:
  - id: acme-analytics
    name: Acme Analytics
    accounts: ["{VENDOR_ACCOUNT}"]
    networks: ["200.249.253.0/24"]
    allowed_actions: ["sts:AssumeRole", "ec2:GetPasswordData"]
"""


def log_files(records: list[dict[str, Any]]) -> list[bytes]:
    """The records as CloudTrail log files of RECORDS_PER_FILE records each."""
    return [
        orjson.dumps({"Records": records[start : start + RECORDS_PER_FILE]})
        for start in range(0, len(records), RECORDS_PER_FILE)
    ]


async def stored_state(url: str, topic: str) -> int:
    store = open_store(url)
    await store.start()
    try:
        return await store.count_state_entries(topic)
    finally:
        await store.close()


async def state_gauge(process: RunProcess) -> float | None:
    response = await process.get("/metrics")
    if response is None or response.status_code != 200:
        return None
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "trailwarden_state_entries"
        for sample in family.samples
    )


async def test_state_bounded_long_stream_of_expiring_sessions_stays_small(
    kafka_bootstrap: str,
    topic_factory: Callable[..., Awaitable[str]],
    produce: Callable[..., Awaitable[None]],
    run_process: Callable[..., Awaitable[RunProcess]],
    checkpoint_offsets: Callable[[str, str, int], Awaitable[list[int]]],
    wait_until: Callable[..., Awaitable[Any]],
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    files = [log_files(records) for records in expiring_sessions(SESSIONS, SPACING)]
    ends = [len(partition) for partition in files]
    topic = await topic_factory(len(files))
    url = f"sqlite:///{tmp_path / 'state.db'}"
    await produce_stream(produce, topic, files)

    process = await run_process(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic=topic,
        kafka_group_id=f"state-{topic}",
        kafka_max_batch_records=2,
        policy_file=policy,
        database_url=url,
    )
    # Sample the stored state between checkpoints until the stream is consumed.
    samples: list[int] = []

    async def consumed() -> bool:
        samples.append(await stored_state(url, topic))
        return await checkpoint_offsets(url, topic, len(files)) == ends

    await wait_until(consumed, 50)
    final = await stored_state(url, topic)
    gauge = await wait_until(lambda: state_gauge(process), 10)
    assert await process.stop() == 0, process.log()

    assert max([*samples, final]) < BOUND
    assert final > 0
    assert abs(gauge - final) <= max(3, final // 10)
