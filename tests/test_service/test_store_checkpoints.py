"""AlertStore checkpoints: batch, state and next offset in one fenced transaction."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from detectors.state import StateDelta, StateEntry
from service.dead_letters import DeadLetter
from service.store import AlertStore, CheckpointConflict, database_url, open_store
from service.store.migrate import head_revision
from service.store.schema import metadata

# The delivery outbox adds its table to the same metadata, and its own migration.
importlib.import_module("service.forwarders.outbox_schema")

TOPIC = "cloudtrail"
EXPIRES = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)


def entry(key: str, value: bytes = b'{"p":"acme"}') -> StateEntry:
    return StateEntry(kind="session", key=key, value=value, expires_at=EXPIRES)


def letter(offset: int) -> DeadLetter:
    return DeadLetter(
        source=TOPIC,
        partition=0,
        offset=offset,
        reason="not_json",
        detail="bad",
        payload=b"x",
        received_at=EXPIRES,
    )


async def test_save_batch_first_checkpoint_round_trips(
    store: AlertStore, make_finding: object
) -> None:
    delta = StateDelta(upserts=[entry("ASIA1"), entry("ASIA2")])

    changes = await store.save_batch(
        topic=TOPIC,
        partition=0,
        previous_offset=None,
        next_offset=10,
        findings=[make_finding(1)],  # type: ignore[operator]
        dead_letters=[letter(3)],
        state=delta,
    )
    checkpoint = await store.load_checkpoint(TOPIC, 0)

    assert [change.created for change in changes] == [True]
    assert checkpoint is not None
    assert checkpoint.next_offset == 10
    assert checkpoint.entries == [entry("ASIA1"), entry("ASIA2")]
    assert [dl.offset for dl in await store.list_dead_letters()] == [3]
    assert await store.load_checkpoint(TOPIC, 1) is None


async def test_save_batch_upserts_and_deletes_only_changes(store: AlertStore) -> None:
    first = StateDelta(upserts=[entry("ASIA1"), entry("ASIA2")])
    second = StateDelta(upserts=[entry("ASIA2", b"2")], deletes=[("session", "ASIA1")])
    await store.save_batch(
        topic=TOPIC, partition=0, previous_offset=None, next_offset=5,
        findings=[], dead_letters=[], state=first,
    )  # fmt: skip

    await store.save_batch(
        topic=TOPIC, partition=0, previous_offset=5, next_offset=9,
        findings=[], dead_letters=[], state=second,
    )  # fmt: skip
    checkpoint = await store.load_checkpoint(TOPIC, 0)

    assert checkpoint is not None
    assert checkpoint.next_offset == 9
    assert checkpoint.entries == [entry("ASIA2", b"2")]
    assert await store.count_state_entries(TOPIC) == 1


@pytest.mark.parametrize("previous", [None, 3, 7])
async def test_save_batch_stale_previous_offset_conflicts_and_stores_nothing(
    store: AlertStore, make_finding: object, previous: int | None
) -> None:
    """A replica that lost the partition cannot overwrite the new owner's work."""
    await store.save_batch(
        topic=TOPIC, partition=0, previous_offset=None, next_offset=5,
        findings=[], dead_letters=[], state=StateDelta(upserts=[entry("A")]),
    )  # fmt: skip

    with pytest.raises(CheckpointConflict):
        await store.save_batch(
            topic=TOPIC, partition=0, previous_offset=previous, next_offset=8,
            findings=[make_finding(1)], dead_letters=[letter(6)],  # type: ignore[operator]
            state=StateDelta(deletes=[("session", "A")]),
        )  # fmt: skip
    checkpoint = await store.load_checkpoint(TOPIC, 0)

    assert checkpoint is not None
    assert checkpoint.next_offset == 5
    assert checkpoint.entries == [entry("A")]
    assert await store.list_dead_letters() == []
    assert await store.count_state_entries() == 1


async def test_save_batch_partitions_are_independent(store: AlertStore) -> None:
    for partition in (0, 1):
        await store.save_batch(
            topic=TOPIC, partition=partition, previous_offset=None,
            next_offset=partition + 1, findings=[], dead_letters=[],
            state=StateDelta(upserts=[entry(f"k{partition}")]),
        )  # fmt: skip

    zero = await store.load_checkpoint(TOPIC, 0)
    one = await store.load_checkpoint(TOPIC, 1)

    assert zero is not None and one is not None
    assert (zero.next_offset, zero.entries) == (1, [entry("k0")])
    assert (one.next_offset, one.entries) == (2, [entry("k1")])


async def test_save_batch_outbox_runs_in_transaction(
    store_url: str, make_finding: object
) -> None:
    seen: list[int] = []

    async def outbox(conn: object, changes: object) -> None:
        seen.append(len(changes))  # type: ignore[arg-type]
        raise RuntimeError("outbox refused")

    store = open_store(store_url, outbox=outbox)  # type: ignore[arg-type]
    await store.start()
    try:
        with pytest.raises(RuntimeError):
            await store.save_batch(
                topic=TOPIC, partition=0, previous_offset=None, next_offset=1,
                findings=[make_finding(1)], dead_letters=[],  # type: ignore[operator]
                state=StateDelta(),
            )  # fmt: skip
        checkpoint = await store.load_checkpoint(TOPIC, 0)
    finally:
        await store.close()

    assert seen == [1]
    assert checkpoint is None


async def test_start_migrations_match_schema_and_rerun_is_noop(store_url: str) -> None:
    """The Alembic revisions build exactly the tables schema.py describes."""
    for _ in range(2):
        store = open_store(store_url)
        await store.start()
        await store.close()
    engine = create_async_engine(database_url(store_url))
    try:
        async with engine.connect() as conn:
            revision, diff = await conn.run_sync(_compare)
    finally:
        await engine.dispose()

    assert revision == head_revision()
    assert diff == []


def _compare(connection: sa.Connection) -> tuple[str | None, list[object]]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": _not_alembic}
    )
    return context.get_current_revision(), compare_metadata(context, metadata)


def _not_alembic(name: str | None, type_: str, _parents: object) -> bool:
    return type_ != "table" or name != "alembic_version"


async def test_start_adopts_database_made_before_migrations(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/old.db"  # type: ignore[str-bytes-safe]
    engine = create_async_engine(database_url(url))
    tables = [metadata.tables["alerts"], metadata.tables["dead_letters"]]
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all, tables=tables)
    await engine.dispose()

    store = open_store(url, dedup_window=timedelta(hours=1))
    await store.start()
    try:
        checkpoint = await store.load_checkpoint(TOPIC, 0)
    finally:
        await store.close()

    assert checkpoint is None
