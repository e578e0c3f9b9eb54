"""The uninterrupted reference run of the session stream, and comparing against it.

Register with `pytest_plugins = ["fixtures_reference"]`. `reference_alerts` is
what one `trailwarden run` stores for `session_stream` (run once per test
session); `settle` waits until every partition's checkpoint reaches its end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fixtures_stream import SessionStream

Alerts = dict[str, tuple[Any, ...]]
Produce = Callable[..., Awaitable[None]]
Settle = Callable[..., Awaitable[list[int]]]


async def produce_stream(
    produce: Produce, topic: str, partitions: list[list[bytes]]
) -> None:
    """Send each partition's messages to that partition, in order."""
    for partition, messages in enumerate(partitions):
        await produce(topic, messages, partition=partition)


def chunked(partitions: list[list[bytes]], count: int) -> list[list[list[bytes]]]:
    """The stream cut into `count` consecutive chunks, each over every partition."""
    return [
        [messages[len(messages) * i // count : len(messages) * (i + 1) // count]
         for messages in partitions]
        for i in range(count)
    ]  # fmt: skip


def ends(stream: SessionStream) -> list[int]:
    """The next offset of each partition once the whole stream is consumed."""
    return [len(messages) for messages in stream.partitions]


def assert_same_alerts(actual: Alerts, reference: Alerts) -> None:
    """Equal field by field: same ids, and every field of every alert."""
    assert len(reference) > 10
    assert sorted(actual) == sorted(reference)
    for alert_id, fields in reference.items():
        assert actual[alert_id] == fields, alert_id


@pytest.fixture
def settle(
    wait_until: Callable[..., Awaitable[Any]],
    checkpoint_offsets: Callable[[str, str, int], Awaitable[list[int]]],
) -> Settle:
    """Wait until the checkpoints of `topic` in `url` are at `ends` (per partition)."""

    async def settle(
        url: str, topic: str, ends: list[int], within: float = 40
    ) -> list[int]:
        async def reached() -> list[int] | None:
            offsets = await checkpoint_offsets(url, topic, len(ends))
            return offsets if offsets == ends else None

        result: list[int] = await wait_until(reached, within)
        return result

    return settle


@pytest.fixture(scope="session")
def _reference_runs() -> dict[bytes, Alerts]:
    return {}


@pytest.fixture
async def reference_alerts(
    session_stream: SessionStream,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Awaitable[str]],
    produce: Produce,
    run_process: Callable[..., Awaitable[Any]],
    settle: Settle,
    stored_alerts: Callable[[str], Awaitable[Alerts]],
    tmp_path: Path,
    _reference_runs: dict[bytes, Alerts],
) -> Alerts:
    """The alerts of one uninterrupted `trailwarden run` over the whole stream."""
    key = b"\0".join(b"\n".join(messages) for messages in session_stream.partitions)
    key += session_stream.policy_file.read_bytes()
    if key in _reference_runs:
        return _reference_runs[key]

    topic = await topic_factory(len(session_stream.partitions))
    url = f"sqlite:///{tmp_path / 'reference.db'}"
    await produce_stream(produce, topic, session_stream.partitions)
    process = await run_process(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic=topic,
        kafka_group_id=f"reference-{topic}",
        policy_file=session_stream.policy_file,
        database_url=url,
    )
    await settle(url, topic, ends(session_stream))
    assert await process.stop() == 0, process.log()

    alerts = await stored_alerts(url)
    _reference_runs[key] = alerts
    return alerts
