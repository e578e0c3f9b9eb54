"""Alert-store fixtures: stores on SQLite and PostgreSQL, and a Finding factory.

Register with `pytest_plugins = ["fixtures_postgres"]`. PostgreSQL gets a fresh
database per test session, emptied before each test. The server is
`TEST_POSTGRES_URL` (default postgresql://postgres@127.0.0.1:5432/test); tests
that need it are skipped, with the reason, when it cannot be reached or started.
"""

from __future__ import annotations

import asyncio
import glob
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from detectors.detector import Finding
from service.store import AlertStore, open_store

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
_CONNECT_TIMEOUT = 5.0


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    # A thread of its own keeps asyncio.run away from pytest-asyncio's loops.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _execute(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(url, timeout=_CONNECT_TIMEOUT)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def _unreachable_reason(url: str) -> str | None:
    try:
        _run(_execute(url, "SELECT 1"))
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _start_local_cluster() -> None:
    """Try once to start the Debian-packaged cluster, as on a fresh dev box."""
    for version_dir in sorted(glob.glob("/etc/postgresql/*")):
        version = os.path.basename(version_dir)
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]
        try:
            subprocess.run(
                [*command, "start"], check=False, capture_output=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            return


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a database created for this session and dropped after it."""
    admin_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_ADMIN_URL)
    reason = _unreachable_reason(admin_url)
    if reason is not None:
        _start_local_cluster()
        reason = _unreachable_reason(admin_url)
    if reason is not None:
        shown = make_url(admin_url).render_as_string(hide_password=True)
        pytest.skip(f"PostgreSQL not reachable at {shown} ({reason})")

    name = f"trailwarden_test_{uuid.uuid4().hex[:12]}"
    _run(_execute(admin_url, f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name)
    yield url.render_as_string(hide_password=False)
    _run(_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The session database, with every table of earlier tests dropped."""
    _run(
        _execute(
            postgres_database,
            "DROP SCHEMA public CASCADE",
            "CREATE SCHEMA public",
        )
    )
    return postgres_database


StoreFactory = Callable[..., Awaitable[AlertStore]]
FindingFactory = Callable[..., Finding]

BASE_TIME = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for an empty store: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'alerts.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store_factory(store_url: str) -> AsyncIterator[StoreFactory]:
    """Start stores on `store_url` (one database); closes them all afterwards."""
    started: list[AlertStore] = []

    async def start(dedup_window: timedelta = timedelta(hours=1)) -> AlertStore:
        store = open_store(store_url, dedup_window=dedup_window)
        await store.start()
        started.append(store)
        return store

    yield start
    for store in started:
        await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> AlertStore:
    """A started, empty store with a one-hour dedup window."""
    return await store_factory()


@pytest.fixture
def make_finding() -> FindingFactory:
    """Build a Finding: `n` picks the event id and minutes after BASE_TIME."""

    def make(n: int = 0, **overrides: Any) -> Finding:
        values: dict[str, Any] = {
            "detector": "mfa-missing",
            "severity": "high",
            "title": "Acme Analytics acted without MFA",
            "dedup_key": "mfa-missing|acme-analytics|111122223333",
            "third_party": "acme-analytics",
            "account_id": "111122223333",
            "actor": "arn:aws:sts::111122223333:assumed-role/AcmeAuditRole/acme",
            "source_ip": "203.0.113.10",
            "region": "us-east-1",
            "event_time": BASE_TIME + timedelta(minutes=n),
            "event_id": f"event-{n:04d}",
            "action": "s3:GetObject",
            "details": {"mfa_authenticated": False},
        }
        values.update(overrides)
        return Finding(**values)

    return make
