"""`trailwarden run` as real processes, and reading back what they stored.

Register with `pytest_plugins = ["fixtures_process"]`. `run_process` starts
`python -m service run` with TRAILWARDEN_* settings; every process still running
at the end of the test is killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from service.alerts import Alert, AlertQuery
from service.store import open_store


@dataclass
class RunProcess:
    """One `trailwarden run` process; its log goes to `log_path`."""

    process: asyncio.subprocess.Process
    log_path: Path
    http_port: int

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def kill(self) -> None:
        """SIGKILL: no drain, no commit, nothing flushed."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)

    async def stop(self, within: float = 60.0) -> int:
        """SIGTERM, then wait for the exit status."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), within)

    async def wait(self, within: float = 60.0) -> int:
        return await asyncio.wait_for(self.process.wait(), within)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, *names: str) -> list[dict[str, Any]]:
        """The JSON log events named one of `names`, in order; other lines skipped."""
        found: list[dict[str, Any]] = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("event") in names:
                found.append(event)
        return found

    async def get(self, path: str) -> httpx.Response | None:
        """GET `path` from the process's API; None while it does not answer."""
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                return await client.get(url)
        except httpx.TransportError:
            return None


@dataclass
class _Started:
    processes: list[RunProcess] = field(default_factory=list)


RunProcessFactory = Callable[..., Awaitable[RunProcess]]


@pytest.fixture
async def run_process(
    tmp_path: Path, free_port: Callable[[], int]
) -> AsyncIterator[RunProcessFactory]:
    """Start `python -m service run` with settings as keyword arguments.

    `run_process(kafka_topic="t", database_url=...)` sets TRAILWARDEN_KAFKA_TOPIC
    and so on; `http_port` defaults to a free port and `log_format` to json.
    """
    started = _Started()

    async def start(**settings: Any) -> RunProcess:
        settings.setdefault("http_port", free_port())
        settings.setdefault("log_format", "json")
        env = dict(os.environ)
        for name, value in settings.items():
            env[f"TRAILWARDEN_{name.upper()}"] = str(value)
        log_path = tmp_path / f"run-{len(started.processes)}.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "service", "run", env=env, stdout=log, stderr=log
            )
        handle = RunProcess(process, log_path, int(settings["http_port"]))
        started.processes.append(handle)
        return handle

    try:
        yield start
    finally:
        for handle in started.processes:
            if handle.running:
                handle.process.kill()
                await handle.process.wait()


def _comparable(alert: Alert) -> tuple[Any, ...]:
    return (
        alert.id,
        alert.detector,
        alert.severity,
        alert.title,
        alert.third_party,
        alert.account_id,
        alert.actor,
        alert.source_ip,
        alert.action,
        alert.event_time,
        alert.first_seen,
        alert.last_seen,
        alert.count,
        tuple(alert.event_ids),
        alert.status,
        repr(sorted(alert.details.items())),
    )


async def _stored_alerts(url: str) -> dict[str, tuple[Any, ...]]:
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
    return {alert.id: _comparable(alert) for alert in alerts}


async def _checkpoint_offsets(url: str, topic: str, partitions: int) -> list[int]:
    store = open_store(url)
    await store.start()
    try:
        offsets = []
        for partition in range(partitions):
            checkpoint = await store.load_checkpoint(topic, partition)
            offsets.append(-1 if checkpoint is None else checkpoint.next_offset)
    finally:
        await store.close()
    return offsets


@pytest.fixture
def stored_alerts() -> Callable[[str], Awaitable[dict[str, tuple[Any, ...]]]]:
    """Every stored alert of a database, by id, as a tuple of all its fields."""
    return _stored_alerts


@pytest.fixture
def checkpoint_offsets() -> Callable[[str, str, int], Awaitable[list[int]]]:
    """The checkpointed next offset of each partition (-1: none yet)."""
    return _checkpoint_offsets
