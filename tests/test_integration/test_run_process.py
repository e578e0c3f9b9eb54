"""`trailwarden run` as a real process: consume, serve alerts, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

pytestmark = pytest.mark.integration

DATA = Path(__file__).parents[1] / "data" / "integration"
TOKEN = "process-token"


async def alert_count(client: httpx.AsyncClient) -> int | None:
    try:
        response = await client.get("/alerts")
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        return None
    return len(response.json()["items"]) or None


async def test_run_process_sigterm_commits_and_exits_zero(
    kafka_bootstrap: str,
    topic_factory: Callable[..., Awaitable[str]],
    produce: Callable[..., Awaitable[None]],
    tmp_path: Path,
    wait_until: Callable[..., Awaitable[Any]],
    free_port: Callable[[], int],
) -> None:
    topic = await topic_factory()
    group = f"process-{uuid.uuid4().hex[:8]}"
    port = free_port()
    records = (DATA / "stratus_ec2_get_password_data.jsonl").read_bytes().splitlines()
    env = {
        **os.environ,
        "TRAILWARDEN_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TRAILWARDEN_KAFKA_TOPIC": topic,
        "TRAILWARDEN_KAFKA_GROUP_ID": group,
        "TRAILWARDEN_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
        "TRAILWARDEN_POLICY_FILE": str(DATA / "policy.yaml"),
        "TRAILWARDEN_API_TOKENS": TOKEN,
        "TRAILWARDEN_HTTP_PORT": str(port),
        "TRAILWARDEN_LOG_FORMAT": "json",
    }
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", "run", env=env, stdout=log, stderr=log
        )
        try:
            await produce(topic, records)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as client:
                count = await wait_until(lambda: alert_count(client), 60)

            process.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(process.wait(), 60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    assert count == 3
    assert returncode == 0, log_path.read_text()
    events = [orjson.loads(line) for line in log_path.read_bytes().splitlines()]
    names = [event["event"] for event in events]
    assert names.index("service.stopping") < names.index("consumer.stopped")
    assert all(TOKEN not in line for line in log_path.read_text().splitlines())
    assert await committed_offset(kafka_bootstrap, group, topic) == len(records)


async def committed_offset(bootstrap: str, group: str, topic: str) -> Any:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()
