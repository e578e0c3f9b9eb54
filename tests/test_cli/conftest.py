"""Fixtures for the command-line tests: a CLI runner and a replayed example store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.alerts import Alert, AlertQuery
from service.cli import app
from service.dead_letters import DeadLetter
from service.store import open_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INPUTS = EXAMPLES / "inputs"
POLICY = EXAMPLES / "policy.yaml"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """replay points the root logger at the runner's stderr; put it back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200", "TRAILWARDEN_DATABASE_URL": None})


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'alerts.db'}"


@pytest.fixture
def replayed_db(runner: CliRunner, db_url: str) -> str:
    """A store holding the alerts of a replay of examples/ with its policy."""
    result = runner.invoke(
        app, ["replay", "--policy", str(POLICY), "--db", db_url, str(INPUTS)]
    )
    assert result.exit_code == 0, result.output
    return db_url


@pytest.fixture
def read_alerts() -> Callable[[str], list[Alert]]:
    """Every alert in the store at a URL, read through the store itself."""
    return lambda url: asyncio.run(_stored_alerts(url))


@pytest.fixture
def read_dead_letters() -> Callable[[str], list[DeadLetter]]:
    return lambda url: asyncio.run(_stored_dead_letters(url))


async def _stored_alerts(url: str) -> list[Alert]:
    store = open_store(url)
    await store.start()
    try:
        alerts: list[Alert] = []
        cursor: str | None = None
        while True:
            page = await store.list_alerts(AlertQuery(), limit=100, cursor=cursor)
            alerts.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                return alerts
    finally:
        await store.close()


async def _stored_dead_letters(url: str) -> list[DeadLetter]:
    store = open_store(url)
    await store.start()
    try:
        return await store.list_dead_letters()
    finally:
        await store.close()
