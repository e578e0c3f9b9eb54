"""The delivery outbox in SQLite or PostgreSQL, with SQLAlchemy Core.

Claims are leases on rows (`claimed_until`). PostgreSQL takes them with
`FOR UPDATE SKIP LOCKED`, so replicas never wait on each other; SQLite takes
them in one transaction under a process-local lock (one writer anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.alerts import AlertChange
from service.forwarders.destinations import SnsDestination, WebhookDestination
from service.forwarders.outbox import (
    BACKLOG_STATUSES,
    DEFAULT_LEASE,
    Delivery,
    DeliveryPage,
    DeliveryStatus,
    clip_error,
    outbox_rows,
)
from service.forwarders.outbox_schema import deliveries
from service.store import StoreUnavailable, database_url
from service.store.cursor import decode_cursor, encode_cursor
from service.store.errors import is_unavailable
from service.store.schema import alerts
from service.store.sql import create_engine

OutboxHook = Callable[[AsyncConnection, Sequence[AlertChange]], Awaitable[None]]

_COLUMNS = [column for column in deliveries.c if column.name != "claimed_until"]


class SqlDeliveryOutbox:
    """A DeliveryOutbox on the alert store's database; see `open_outbox`."""

    def __init__(self, engine: AsyncEngine, *, owns_engine: bool = False) -> None:
        self._engine = engine
        self._owns_engine = owns_engine
        self._postgres = engine.dialect.name == "postgresql"
        self._lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    async def create_table(self) -> None:
        """Create the deliveries table if missing (for databases without migrations)."""
        async with self._engine.begin() as conn:
            await conn.run_sync(deliveries.create, checkfirst=True)

    async def close(self) -> None:
        """Release the connections, if this outbox created its engine."""
        if self._owns_engine:
            await self._engine.dispose()

    async def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows made by `outbox_rows`, in order, in one transaction."""
        if not rows:
            return
        async with self._writing() as conn:
            await conn.execute(deliveries.insert(), [dict(row) for row in rows])

    async def claim_due(
        self,
        destination: str,
        now: datetime,
        limit: int,
        *,
        lease: timedelta = DEFAULT_LEASE,
    ) -> list[Delivery]:
        """The oldest pending deliveries of `destination`, leased until now + lease.

        Nothing when the oldest one is not due yet or another dispatcher holds
        it: later deliveries wait behind it, so each destination gets alerts
        in order.
        """
        pending = (deliveries.c.destination == destination) & (
            deliveries.c.status == "pending"
        )
        statement = (
            sa.select(deliveries).where(pending).order_by(deliveries.c.seq).limit(limit)
        )
        if self._postgres:
            statement = statement.with_for_update(skip_locked=True)

        async with self._writing() as conn:
            if not self._postgres:
                # A write first takes SQLite's write lock, so the read below and
                # the claim are one step for every other connection too.
                await conn.execute(
                    deliveries.update().where(sa.false()).values(claimed_until=None)
                )
            rows = (await conn.execute(statement)).mappings().all()
            if not rows:
                return []
            if self._postgres:
                # SKIP LOCKED hides a head another replica is claiming right now.
                head = sa.select(sa.func.min(deliveries.c.seq)).where(pending)
                if (await conn.execute(head)).scalar_one() != rows[0]["seq"]:
                    return []

            claimed = []
            for row in rows:
                if not _claimable(row, now):
                    break
                claimed.append(row)
            if claimed:
                ids = [row["id"] for row in claimed]
                await conn.execute(
                    deliveries.update()
                    .where(deliveries.c.id.in_(ids))
                    .values(claimed_until=now + lease)
                )
        return [_delivery(row) for row in claimed]

    async def release(self, delivery_ids: Sequence[str]) -> None:
        """Give up claims without an attempt (a dispatcher stopping)."""
        if not delivery_ids:
            return
        async with self._writing() as conn:
            await conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(list(delivery_ids)))
                .values(claimed_until=None)
            )

    async def mark_delivered(self, delivery_id: str) -> None:
        now = datetime.now(UTC)
        await self._attempted(
            delivery_id, status="delivered", delivered_at=now, last_error=None
        )

    async def mark_retry(
        self, delivery_id: str, error: str, next_attempt_at: datetime
    ) -> None:
        await self._attempted(
            delivery_id, last_error=clip_error(error), next_attempt_at=next_attempt_at
        )

    async def mark_failed(self, delivery_id: str, error: str) -> None:
        await self._attempted(
            delivery_id, status="failed", last_error=clip_error(error)
        )

    async def get(self, delivery_id: str) -> Delivery | None:
        statement = sa.select(*_COLUMNS).where(deliveries.c.id == delivery_id)
        async with self._reading() as conn:
            row = (await conn.execute(statement)).mappings().first()
        return None if row is None else _delivery(row)

    async def list(
        self,
        status: DeliveryStatus | None,
        limit: int,
        cursor: str | None,
        *,
        destination: str | None = None,
    ) -> DeliveryPage:
        """Deliveries newest first; raises InvalidCursor for a foreign cursor."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        statement = (
            sa.select(*_COLUMNS).order_by(deliveries.c.seq.desc()).limit(limit + 1)
        )
        if status is not None:
            statement = statement.where(deliveries.c.status == status)
        if destination is not None:
            statement = statement.where(deliveries.c.destination == destination)
        if cursor is not None:
            statement = statement.where(deliveries.c.seq < decode_cursor(cursor))

        async with self._reading() as conn:
            rows = (await conn.execute(statement)).mappings().all()
        page = rows[:limit]
        more = len(rows) > limit
        return DeliveryPage(
            [_delivery(row) for row in page],
            encode_cursor(page[-1]["seq"]) if more else None,
        )

    async def retry(self, delivery_id: str) -> bool:
        """Failed back to pending with attempts reset; False if it is not failed."""
        now = datetime.now(UTC)
        statement = (
            deliveries.update()
            .where((deliveries.c.id == delivery_id) & (deliveries.c.status == "failed"))
            .values(
                status="pending",
                attempts=0,
                next_attempt_at=now,
                claimed_until=None,
                updated_at=now,
            )
        )
        async with self._writing() as conn:
            result = await conn.execute(statement)
        return result.rowcount == 1

    async def backlog(self) -> dict[tuple[str, str], int]:
        """Pending and failed deliveries per (destination, status)."""
        statement = (
            sa.select(deliveries.c.destination, deliveries.c.status, sa.func.count())
            .where(deliveries.c.status.in_(BACKLOG_STATUSES))
            .group_by(deliveries.c.destination, deliveries.c.status)
        )
        async with self._reading() as conn:
            rows = (await conn.execute(statement)).all()
        return {(row[0], row[1]): int(row[2]) for row in rows}

    async def _attempted(self, delivery_id: str, **values: Any) -> None:
        statement = (
            deliveries.update()
            .where(deliveries.c.id == delivery_id)
            .values(
                attempts=deliveries.c.attempts + 1,
                claimed_until=None,
                updated_at=datetime.now(UTC),
                **values,
            )
        )
        async with self._writing() as conn:
            await conn.execute(statement)

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.connect() as conn:
                yield conn
        except (TimeoutError, sa_exc.DBAPIError, OSError) as exc:
            if not isinstance(exc, TimeoutError) and not is_unavailable(exc):
                raise
            raise StoreUnavailable("database unavailable for the outbox") from exc

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        try:
            if self._lock is None:
                async with self._engine.begin() as conn:
                    yield conn
                return
            async with self._lock, self._engine.begin() as conn:
                yield conn
        except (TimeoutError, sa_exc.DBAPIError, OSError) as exc:
            if not isinstance(exc, TimeoutError) and not is_unavailable(exc):
                raise
            raise StoreUnavailable("database unavailable for the outbox") from exc


def open_outbox(url: str) -> SqlDeliveryOutbox:
    """An outbox on the database at `url` (the store's URL forms), with its own pool."""
    return SqlDeliveryOutbox(create_engine(database_url(url)), owns_engine=True)


def outbox_hook(
    destinations: Sequence[WebhookDestination | SnsDestination],
) -> OutboxHook:
    """The store's `outbox=` hook: inserts delivery rows in the alerts' transaction."""
    destinations = list(destinations)

    async def write(conn: AsyncConnection, changes: Sequence[AlertChange]) -> None:
        created = [change.alert.id for change in changes if change.created]
        if not created or not destinations:
            return
        previous = await _previous_alerts(conn, created)
        rows = outbox_rows(changes, destinations, previous=previous)
        if rows:
            await conn.execute(deliveries.insert(), rows)

    return write


async def _previous_alerts(
    conn: AsyncConnection, alert_ids: Sequence[str]
) -> dict[str, str]:
    """For each alert id, the newest older alert with the same dedup key, if any."""
    older = alerts.alias("older")
    newest_older = (
        sa.select(older.c.id)
        .where((older.c.dedup_key == alerts.c.dedup_key) & (older.c.seq < alerts.c.seq))
        .order_by(older.c.seq.desc())
        .limit(1)
        .scalar_subquery()
    )
    statement = sa.select(alerts.c.id, newest_older).where(alerts.c.id.in_(alert_ids))
    rows = (await conn.execute(statement)).all()
    return {row[0]: row[1] for row in rows if row[1] is not None}


def _claimable(row: Mapping[Any, Any], now: datetime) -> bool:
    if row["next_attempt_at"] > now:
        return False
    claimed_until = row["claimed_until"]
    return claimed_until is None or claimed_until <= now


def _delivery(row: Mapping[Any, Any]) -> Delivery:
    return Delivery(
        id=row["id"],
        seq=row["seq"],
        destination=row["destination"],
        destination_type=row["destination_type"],
        alert_id=row["alert_id"],
        payload=row["payload"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        delivered_at=row["delivered_at"],
    )
