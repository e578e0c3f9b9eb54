"""Checkpoints: each partition's next offset and detector state, moved together.

A checkpoint only advances from the offset its writer last saw (compare and set),
so a replica that lost a partition cannot overwrite what the new owner wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from detectors.state import StateDelta, StateEntry
from service.store.errors import StoreError
from service.store.schema import checkpoints, detector_state


class CheckpointConflict(StoreError):
    """The partition's checkpoint moved since this writer read it: the batch is void.

    Another replica (or this one, through an earlier attempt whose answer was
    lost) wrote first; reload the checkpoint before processing the partition.
    """


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a partition resumes: the next offset and the state as of it."""

    next_offset: int
    entries: list[StateEntry]


async def advance(
    conn: AsyncConnection,
    *,
    topic: str,
    partition: int,
    previous_offset: int | None,
    next_offset: int,
    now: datetime,
) -> None:
    """Move the checkpoint from `previous_offset` (None: none yet) to `next_offset`.

    Raises CheckpointConflict when the stored offset is not `previous_offset`.
    Runs first in its transaction, so on PostgreSQL it also locks the row
    against a concurrent writer until the batch commits.
    """
    where = (checkpoints.c.topic == topic) & (
        checkpoints.c.kafka_partition == partition
    )
    if previous_offset is None:
        found = await conn.execute(sa.select(checkpoints.c.next_offset).where(where))
        stored = found.scalar_one_or_none()
        if stored is not None:
            raise CheckpointConflict(
                f"{topic}/{partition}: expected no checkpoint, found offset {stored}"
            )
        # A concurrent insert of the same row fails with IntegrityError; the caller
        # retries once and then finds the row here.
        values = {"next_offset": next_offset, "updated_at": now}
        await conn.execute(
            checkpoints.insert().values(
                topic=topic, kafka_partition=partition, **values
            )
        )
        return

    statement = (
        checkpoints.update()
        .where(where & (checkpoints.c.next_offset == previous_offset))
        .values(next_offset=next_offset, updated_at=now)
    )
    result = await conn.execute(statement)
    if result.rowcount != 1:
        raise CheckpointConflict(
            f"{topic}/{partition}: checkpoint is no longer at offset {previous_offset}"
        )


async def write_state(
    conn: AsyncConnection, *, topic: str, partition: int, delta: StateDelta
) -> None:
    """Apply the partition's state changes: upserts, then deletes."""
    if delta.upserts:
        rows = [_state_row(topic, partition, entry) for entry in delta.upserts]
        await conn.execute(_upsert(conn.dialect.name), rows)
    if delta.deletes:
        statement = detector_state.delete().where(
            (detector_state.c.topic == topic)
            & (detector_state.c.kafka_partition == partition)
            & (detector_state.c.kind == sa.bindparam("d_kind"))
            & (detector_state.c.key == sa.bindparam("d_key"))
        )
        keys = [{"d_kind": kind, "d_key": key} for kind, key in delta.deletes]
        await conn.execute(statement, keys)


async def read(conn: AsyncConnection, topic: str, partition: int) -> Checkpoint | None:
    """The partition's checkpoint, or None if it has none."""
    offset = await _offset(conn, topic, partition)
    if offset is None:
        return None

    statement = (
        sa.select(detector_state)
        .where(
            (detector_state.c.topic == topic)
            & (detector_state.c.kafka_partition == partition)
        )
        .order_by(detector_state.c.kind, detector_state.c.key)
    )
    rows = (await conn.execute(statement)).mappings().all()
    # Read committed (and SQLite's per-statement snapshots) could pair the offset
    # with the state of a later batch; read the offset again to be sure.
    if await _offset(conn, topic, partition) != offset:
        raise CheckpointConflict(f"{topic}/{partition}: checkpoint moved while read")
    return Checkpoint(next_offset=offset, entries=[_entry(row) for row in rows])


async def count_state(conn: AsyncConnection, topic: str | None = None) -> int:
    """The number of stored state entries, of one topic or of all."""
    statement = sa.select(sa.func.count()).select_from(detector_state)
    if topic is not None:
        statement = statement.where(detector_state.c.topic == topic)
    return int((await conn.execute(statement)).scalar_one())


async def _offset(conn: AsyncConnection, topic: str, partition: int) -> int | None:
    statement = sa.select(checkpoints.c.next_offset).where(
        (checkpoints.c.topic == topic) & (checkpoints.c.kafka_partition == partition)
    )
    offset: int | None = (await conn.execute(statement)).scalar_one_or_none()
    return offset


def _upsert(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(detector_state)
    return statement.on_conflict_do_update(
        index_elements=["topic", "kafka_partition", "kind", "key"],
        set_={
            "value": statement.excluded.value,
            "expires_at": statement.excluded.expires_at,
        },
    )


def _state_row(topic: str, partition: int, entry: StateEntry) -> dict[str, Any]:
    return {
        "topic": topic,
        "kafka_partition": partition,
        "kind": entry.kind,
        "key": entry.key,
        "value": entry.value,
        "expires_at": entry.expires_at,
    }


def _entry(row: Mapping[Any, Any]) -> StateEntry:
    return StateEntry(
        kind=row["kind"],
        key=row["key"],
        value=bytes(row["value"]),
        expires_at=row["expires_at"],
    )
