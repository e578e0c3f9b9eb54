"""A `bridge s3` process killed between the Kafka acks and the SQS delete.

The restarted bridge reads the message again and produces its records a second
time: nothing is lost, and the consumer drops the repeats by eventID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from bridge_helpers import STRATUS_ACCOUNT, LogFile, log_key

pytestmark = pytest.mark.integration


def _start(
    env: dict[str, str], log: Path, queue_url: str, topic: str, dead: str
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "service", "bridge", "s3"]
    command += ["--queue-url", queue_url, "--topic", topic]
    command += ["--dead-letter-topic", dead, "--metrics-port", "0"]
    command += ["--visibility-timeout", "2", "--wait-seconds", "1"]
    command += ["--log-format", "json", "--log-level", "DEBUG"]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def _logged(log: Path, event: str) -> bool:
    return any(
        json.loads(line).get("event") == event
        for line in log.read_text().splitlines()
        if line.startswith("{")
    )


async def test_bridge_killed_before_delete_rereads_message_without_loss(
    aws_env: dict[str, str],
    aws_client: Callable[[str], Any],
    queue_url: str,
    bucket: str,
    upload: Callable[[LogFile], None],
    trail_records: dict[str, list[dict[str, Any]]],
    kafka_bootstrap: str,
    topic_factory: Callable[..., Awaitable[str]],
    queue_drained: Callable[[str], bool],
    read_topic: Callable[[str], Awaitable[list[Any]]],
    wait_until: Callable[..., Awaitable[Any]],
    tmp_path: Path,
) -> None:
    file = LogFile(
        log_key(STRATUS_ACCOUNT, "us-east-1", "2024-07-30", "crash"),
        trail_records["stratus"],
    )
    upload(file)
    message = {"s3Bucket": bucket, "s3ObjectKey": [file.key]}
    aws_client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
    topic, dead = await topic_factory(), await topic_factory()
    env = {
        **os.environ,
        **aws_env,
        "TRAILWARDEN_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
    }
    log = tmp_path / "bridge.log"
    ids = [record["eventID"] for record in file.records]

    paused = {**env, "_TRAILWARDEN_BRIDGE_TEST_PAUSE_BEFORE_DELETE": "60"}
    first = _start(paused, log, queue_url, topic, dead)
    try:
        await wait_until(lambda: _logged(log, "bridge.paused_before_delete"), 30)
    finally:
        first.kill()
        first.wait(10)
    produced_before_kill = Counter(
        json.loads(m.value)["eventID"] for m in await read_topic(topic)
    )
    second = _start(env, log, queue_url, topic, dead)
    try:
        await wait_until(lambda: queue_drained(queue_url), 40)
    finally:
        second.send_signal(signal.SIGTERM)
        status = second.wait(30)

    produced = Counter(json.loads(m.value)["eventID"] for m in await read_topic(topic))
    assert produced_before_kill == Counter(ids)
    assert produced == Counter(ids * 2)
    assert status == 0
    assert _logged(log, "bridge.stopped")
