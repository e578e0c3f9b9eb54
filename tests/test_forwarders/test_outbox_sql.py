"""The SQL outbox on SQLite and PostgreSQL: written with alerts, claims, retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from service.alerts import AlertChange
from service.forwarders.destinations import WebhookDestination
from service.forwarders.outbox import outbox_rows
from service.forwarders.outbox_sql import SqlDeliveryOutbox, open_outbox, outbox_hook
from service.store import InvalidCursor, database_url, open_store
from service.store.schema import metadata

HOOK = WebhookDestination(
    name="hook", type="webhook", url="http://127.0.0.1:9/hook", secret="k"
)


@pytest.fixture
async def outbox(store_url: str) -> AsyncIterator[SqlDeliveryOutbox]:
    store = open_store(store_url)
    await store.start()
    await store.close()
    outbox = open_outbox(store_url)
    await outbox.create_table()
    yield outbox
    await outbox.close()


async def _add(outbox: SqlDeliveryOutbox, make_alert, count: int) -> None:
    changes = [AlertChange(make_alert(n), created=True) for n in range(count)]
    await outbox.add(outbox_rows(changes, [HOOK]))


async def test_store_hook_writes_deliveries_with_alerts(
    store_url: str, make_finding
) -> None:
    store = open_store(store_url, outbox=outbox_hook([HOOK]))
    await store.start()
    outbox = open_outbox(store_url)
    try:
        first = await store.save_findings([make_finding(0), make_finding(1)])
        # Beyond the one-hour window: a new alert with the same dedup key.
        later = await store.save_findings([make_finding(180)])

        page = await outbox.list(None, 10, None)
    finally:
        await outbox.close()
        await store.close()

    newest, oldest = page.items
    assert oldest.alert_id == first[0].alert.id
    assert oldest.payload["count"] == 2
    assert oldest.payload["repeat"] is True
    assert newest.alert_id == later[0].alert.id
    assert newest.payload["previous_alert_id"] == first[0].alert.id


async def test_claim_due_gives_alert_order_and_leases(
    outbox: SqlDeliveryOutbox, make_alert
) -> None:
    await _add(outbox, make_alert, 5)
    now = datetime.now(UTC)

    first = await outbox.claim_due("hook", now, 3)
    while_leased = await outbox.claim_due("hook", now, 3)
    after_lease = await outbox.claim_due("hook", now + timedelta(minutes=2), 10)

    assert [d.alert_id for d in first] == ["alert-0000", "alert-0001", "alert-0002"]
    assert while_leased == []
    assert len(after_lease) == 5


async def test_claim_due_head_not_due_blocks_destination(
    outbox: SqlDeliveryOutbox, make_alert
) -> None:
    await _add(outbox, make_alert, 3)
    now = datetime.now(UTC)
    head, *rest = await outbox.claim_due("hook", now, 10)
    await outbox.release([d.id for d in rest])

    await outbox.mark_retry(head.id, "HTTP 503", now + timedelta(minutes=5))

    assert await outbox.claim_due("hook", now + timedelta(seconds=1), 10) == []
    again = await outbox.claim_due("hook", now + timedelta(minutes=6), 10)
    assert again[0].id == head.id
    assert again[0].attempts == 1
    assert again[0].last_error == "HTTP 503"


async def test_failed_delivery_listed_then_retried(
    outbox: SqlDeliveryOutbox, make_alert
) -> None:
    await _add(outbox, make_alert, 2)
    now = datetime.now(UTC)
    head, second = await outbox.claim_due("hook", now, 10)
    await outbox.mark_failed(head.id, "HTTP 410")
    await outbox.mark_delivered(second.id)

    failed = await outbox.list("failed", 10, None)
    backlog = await outbox.backlog()
    retried = await outbox.retry(head.id)
    not_failed = await outbox.retry(second.id)
    unknown = await outbox.retry("nope")

    assert [d.id for d in failed.items] == [head.id]
    assert backlog == {("hook", "failed"): 1}
    assert (retried, not_failed, unknown) == (True, False, False)
    pending = await outbox.get(head.id)
    assert pending is not None
    assert (pending.status, pending.attempts) == ("pending", 0)


async def test_list_pages_with_cursor(outbox: SqlDeliveryOutbox, make_alert) -> None:
    await _add(outbox, make_alert, 5)

    first = await outbox.list("pending", 2, None)
    second = await outbox.list("pending", 2, first.next_cursor)
    last = await outbox.list("pending", 2, second.next_cursor)

    seen = [d.alert_id for page in (first, second, last) for d in page.items]
    assert seen == [f"alert-{n:04d}" for n in (4, 3, 2, 1, 0)]
    assert last.next_cursor is None
    with pytest.raises(InvalidCursor):
        await outbox.list(None, 2, "not a cursor")


async def test_claim_due_concurrent_claimers_never_share(
    store_url: str, outbox: SqlDeliveryOutbox, make_alert
) -> None:
    """Two dispatchers on one database: a delivery goes to one of them only."""
    await _add(outbox, make_alert, 30)
    other = open_outbox(store_url)
    now = datetime.now(UTC)
    try:
        batches = await asyncio.gather(
            *(box.claim_due("hook", now, 30) for box in (outbox, other, outbox, other))
        )
    finally:
        await other.close()

    claimed = [d.id for batch in batches for d in batch]
    assert len(claimed) == len(set(claimed)) == 30


async def test_migration_builds_deliveries_table_as_declared(store_url: str) -> None:
    """Revision 0003 creates exactly what outbox_schema.py declares."""
    store = open_store(store_url)
    await store.start()
    await store.close()
    engine = create_async_engine(database_url(store_url))
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_compare_deliveries)
    finally:
        await engine.dispose()

    assert diff == []


def _compare_deliveries(connection: sa.Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_object": _deliveries_only}
    )
    return list(compare_metadata(context, metadata))


def _deliveries_only(
    item: object, name: str | None, type_: str, _reflected: bool, _other: object
) -> bool:
    # include_object sees both sides (include_name only the database's).
    table = item if type_ == "table" else getattr(item, "table", None)
    return getattr(table, "name", None) == "deliveries"
