"""AlertStore on a real PostgreSQL: column types and several writers at once."""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

import asyncpg
import pytest
from fixtures_postgres import FindingFactory, StoreFactory

from service.alerts import AlertQuery
from service.store import StoreUnavailable, open_store

pytestmark = pytest.mark.integration


@pytest.fixture
def store_url(postgres_url: str) -> str:
    """Only PostgreSQL here; SQLite runs the shared tests in test_store.py."""
    return postgres_url


async def test_start_creates_timestamptz_columns_and_indexes(
    store_factory: StoreFactory, postgres_url: str
) -> None:
    await store_factory()

    connection = await asyncpg.connect(postgres_url)
    try:
        types = await connection.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'alerts' AND column_name LIKE '%_seen'"
        )
        indexes = await connection.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'alerts'"
        )
    finally:
        await connection.close()

    assert {row["data_type"] for row in types} == {"timestamp with time zone"}
    assert {"ix_alerts_dedup_key_seq", "ix_alerts_last_seen"} <= {
        row["indexname"] for row in indexes
    }


async def test_start_twice_on_existing_schema_keeps_alerts(
    store_factory: StoreFactory, make_finding: FindingFactory
) -> None:
    first = await store_factory()
    [change] = await first.save_findings([make_finding(0)])

    second = await store_factory()

    assert await second.get_alert(change.alert.id) == change.alert


async def test_save_findings_same_event_from_two_stores_makes_one_alert(
    store_factory: StoreFactory, make_finding: FindingFactory
) -> None:
    """Two processes racing on one new event: one alert, counted once."""
    stores = [await store_factory() for _ in range(4)]

    results = await asyncio.gather(
        *(store.save_findings([make_finding(0)]) for store in stores)
    )

    page = await stores[0].list_alerts(AlertQuery(), limit=10, cursor=None)
    assert [alert.count for alert in page.items] == [1]
    assert sum(len(changes) for changes in results) == 1


async def test_save_findings_concurrent_updates_lose_no_count(
    store_factory: StoreFactory, make_finding: FindingFactory
) -> None:
    first, second = await store_factory(), await store_factory()
    await first.save_findings([make_finding(0)])

    await asyncio.gather(
        *(
            store.save_findings([make_finding(n)])
            for n in range(1, 41)
            for store in [first if n % 2 else second]
        )
    )

    [alert] = (await first.list_alerts(AlertQuery(), limit=10, cursor=None)).items
    assert alert.count == 41


async def test_start_nothing_listening_raises_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = open_store(f"postgresql://postgres@127.0.0.1:{port}/test")

    with pytest.raises(StoreUnavailable):
        await store.start()


async def test_ping_after_connections_killed_reconnects(
    store_factory: StoreFactory, postgres_url: str
) -> None:
    """Pooled connections the server dropped are replaced, not reported as errors."""
    store = await store_factory(dedup_window=timedelta(minutes=1))
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()

    await store.ping()
