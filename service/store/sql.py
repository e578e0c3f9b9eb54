"""AlertStore: alerts, dead letters and checkpoints in SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from detectors.detector import Finding
from detectors.state import StateDelta
from service.alerts import Alert, AlertChange, AlertPage, AlertQuery
from service.dead_letters import MAX_STORED_PAYLOAD_BYTES, DeadLetter
from service.store import checkpoints, dedup, migrate
from service.store.checkpoints import Checkpoint
from service.store.cursor import decode_cursor, encode_cursor
from service.store.errors import StoreUnavailable, is_unavailable
from service.store.schema import alerts, dead_letters

logger = structlog.get_logger(__name__)

Outbox = Callable[[AsyncConnection, Sequence[AlertChange]], Awaitable[None]]
"""Called inside the transaction that stored alert changes, to queue deliveries."""

_FILTERS = ("detector", "severity", "third_party", "account_id", "status")


class AlertStore:
    """Alerts and dead letters in one database; see `open_store` for URLs.

    A finding merges into the newest alert with its dedup key whose
    [first_seen, last_seen] span lies within `dedup_window` of the finding's
    event time; otherwise it opens a new alert.
    """

    def __init__(
        self,
        url: URL,
        *,
        dedup_window: timedelta = timedelta(hours=1),
        ping_timeout: float = 5.0,
        outbox: Outbox | None = None,
    ) -> None:
        self.url = url
        self.dedup_window = dedup_window
        self._ping_timeout = ping_timeout
        self._outbox = outbox
        self._engine: AsyncEngine | None = None
        # SQLite has one writer at a time; queue ours here instead of on its lock.
        self._write_lock = (
            asyncio.Lock() if url.get_backend_name() == "sqlite" else None
        )

    async def start(self) -> None:
        """Connect and migrate the schema to the newest revision."""
        if self._engine is not None:
            return
        _check_sqlite_directory(self.url)
        engine = create_engine(self.url)
        try:
            with _translate_errors("start"):
                async with engine.begin() as conn:
                    previous = await conn.run_sync(migrate.upgrade)
        except BaseException:
            await engine.dispose()
            raise

        self._engine = engine
        logger.info(
            "store.started",
            url=self.url.render_as_string(hide_password=True),
            dedup_window_seconds=self.dedup_window.total_seconds(),
            schema_revision=migrate.head_revision(),
            previous_revision=previous,
        )

    async def close(self) -> None:
        """Release every connection; a closed store can be started again."""
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a trivial query."""
        engine = self._require_engine()
        with _translate_errors("ping"):
            async with asyncio.timeout(self._ping_timeout), engine.connect() as conn:
                await conn.execute(sa.select(1))

    async def save_findings(self, findings: Sequence[Finding]) -> list[AlertChange]:
        """Merge `findings` into alerts, in order, in one transaction.

        Returns one change per finding that created or updated an alert; a
        finding whose event is already on its alert changes nothing.
        """
        if not findings:
            return []
        engine = self._require_engine()

        now = datetime.now(UTC)
        async with self._writing("save_findings"):
            try:
                return await self._save_findings(engine, findings, now)
            except sa_exc.IntegrityError:
                # Another process opened the same alert id first; now we see it.
                logger.debug("store.save_retried", findings=len(findings))
                return await self._save_findings(engine, findings, now)

    async def save_batch(
        self,
        *,
        topic: str,
        partition: int,
        previous_offset: int | None,
        next_offset: int,
        findings: Sequence[Finding],
        dead_letters: Sequence[DeadLetter],
        state: StateDelta,
    ) -> list[AlertChange]:
        """Store one partition's batch and move its checkpoint, in one transaction.

        The checkpoint moves from `previous_offset` (None: the partition has none
        yet) to `next_offset`, with the batch's alerts, dead letters and state
        changes. Raises CheckpointConflict, storing nothing, when the checkpoint
        is no longer at `previous_offset`.
        """
        engine = self._require_engine()

        now = datetime.now(UTC)
        batch = _Batch(topic, partition, previous_offset, next_offset, state)
        async with self._writing("save_batch"):
            try:
                return await self._save_batch(
                    engine, batch, findings, dead_letters, now
                )
            except sa_exc.IntegrityError:
                # Another writer inserted the same alert id or checkpoint row first.
                logger.debug("store.save_retried", findings=len(findings))
                return await self._save_batch(
                    engine, batch, findings, dead_letters, now
                )

    async def load_checkpoint(self, topic: str, partition: int) -> Checkpoint | None:
        """The partition's next offset and state, or None if it has no checkpoint."""
        engine = self._require_engine()

        # One snapshot for the offset and the state: REPEATABLE READ on
        # PostgreSQL; on SQLite, in-process writers wait on the write lock, and
        # another process's writes (tests, tools) are caught by re-reading.
        async with self._writing("load_checkpoint"):
            for attempt in range(_CHECKPOINT_READS):
                try:
                    async with engine.connect() as conn:
                        snapshot = await conn.execution_options(
                            isolation_level=_SNAPSHOT_ISOLATION.get(
                                engine.dialect.name, "SERIALIZABLE"
                            )
                        )
                        async with snapshot.begin():
                            return await checkpoints.read(snapshot, topic, partition)
                except checkpoints.CheckpointConflict:
                    await asyncio.sleep(0.01 * (attempt + 1))
            raise StoreUnavailable(f"{topic}/{partition}: checkpoint keeps moving")

    async def count_state_entries(self, topic: str | None = None) -> int:
        """How many detector state entries are stored (of `topic`, or of all)."""
        engine = self._require_engine()
        with _translate_errors("count_state_entries"):
            async with engine.connect() as conn:
                return await checkpoints.count_state(conn, topic)

    async def save_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Keep undecodable input, each payload cut to MAX_STORED_PAYLOAD_BYTES."""
        if not letters:
            return
        engine = self._require_engine()

        rows = [_dead_letter_row(letter) for letter in letters]
        async with self._writing("save_dead_letters"), engine.begin() as conn:
            await conn.execute(dead_letters.insert(), rows)

    async def get_alert(self, alert_id: str) -> Alert | None:
        """The alert with this id, or None."""
        engine = self._require_engine()

        statement = sa.select(alerts).where(alerts.c.id == dedup.clean_text(alert_id))
        with _translate_errors("get_alert"):
            async with engine.connect() as conn:
                row = (await conn.execute(statement)).mappings().first()
        return None if row is None else dedup.alert_from_row(row)

    async def list_alerts(
        self, query: AlertQuery, *, limit: int, cursor: str | None
    ) -> AlertPage:
        """Alerts matching `query`, newest first, `limit` at a time.

        `cursor` is the `next_cursor` of the previous page; alerts created since
        that page appear on a fresh first page, never shifting later pages.
        Raises InvalidCursor for a cursor this store did not hand out.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        engine = self._require_engine()

        statement = _alert_query(query).order_by(alerts.c.seq.desc()).limit(limit + 1)
        if cursor is not None:
            statement = statement.where(alerts.c.seq < decode_cursor(cursor))
        with _translate_errors("list_alerts"):
            async with engine.connect() as conn:
                rows = (await conn.execute(statement)).mappings().all()

        page = rows[:limit]
        more = len(rows) > limit
        return AlertPage(
            items=[dedup.alert_from_row(row) for row in page],
            next_cursor=encode_cursor(page[-1]["seq"]) if more else None,
        )

    async def list_dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """The newest `limit` dead letters, newest first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        engine = self._require_engine()

        statement = (
            sa.select(dead_letters).order_by(dead_letters.c.seq.desc()).limit(limit)
        )
        with _translate_errors("list_dead_letters"):
            async with engine.connect() as conn:
                rows = (await conn.execute(statement)).mappings().all()
        return [_dead_letter_from_row(row) for row in rows]

    async def _save_findings(
        self, engine: AsyncEngine, findings: Sequence[Finding], now: datetime
    ) -> list[AlertChange]:
        async with engine.begin() as conn:
            return await self._merge(conn, findings, now)

    async def _save_batch(
        self,
        engine: AsyncEngine,
        batch: _Batch,
        findings: Sequence[Finding],
        letters: Sequence[DeadLetter],
        now: datetime,
    ) -> list[AlertChange]:
        async with engine.begin() as conn:
            await checkpoints.advance(
                conn,
                topic=batch.topic,
                partition=batch.partition,
                previous_offset=batch.previous_offset,
                next_offset=batch.next_offset,
                now=now,
            )
            changes = await self._merge(conn, findings, now)
            if letters:
                rows = [_dead_letter_row(letter) for letter in letters]
                await conn.execute(dead_letters.insert(), rows)
            await checkpoints.write_state(
                conn, topic=batch.topic, partition=batch.partition, delta=batch.state
            )
        return changes

    async def _merge(
        self, conn: AsyncConnection, findings: Sequence[Finding], now: datetime
    ) -> list[AlertChange]:
        changes = []
        for finding in findings:
            change = await self._save_finding(conn, finding, now)
            if change is not None:
                changes.append(change)
        if changes and self._outbox is not None:
            await self._outbox(conn, changes)
        return changes

    async def _save_finding(
        self, conn: AsyncConnection, finding: Finding, now: datetime
    ) -> AlertChange | None:
        row = await self._matching_alert(conn, finding, now)
        if row is None:
            values = dedup.new_alert_values(finding, now)
            row = await _alert_row(conn, alerts.c.id == values["id"])
            if row is None:
                await conn.execute(alerts.insert().values(values))
                return AlertChange(alert=dedup.alert_from_row(values), created=True)

        # Either a match in the window, or the very alert this event once opened.
        changed = dedup.merged_values(row, finding, now)
        if changed is None:
            return None
        statement = alerts.update().where(alerts.c.seq == row["seq"]).values(changed)
        await conn.execute(statement)
        return AlertChange(
            alert=dedup.alert_from_row({**row, **changed}), created=False
        )

    async def _matching_alert(
        self, conn: AsyncConnection, finding: Finding, now: datetime
    ) -> Mapping[Any, Any] | None:
        """The alert `finding` joins: the one whose span is within the window.

        Alerts with one key are never within a window of each other in order;
        a late finding that reaches two of them folds them into the oldest.
        """
        condition = alerts.c.dedup_key == dedup.clean_text(finding.dedup_key)
        if finding.event_time is None:
            return await _alert_row(conn, condition)

        start, end = dedup.window_around(finding.event_time, self.dedup_window)
        condition &= (alerts.c.first_seen <= end) & (alerts.c.last_seen >= start)
        statement = (
            sa.select(alerts).where(condition).order_by(alerts.c.seq).with_for_update()
        )
        rows = (await conn.execute(statement)).mappings().all()
        if len(rows) <= 1:
            return rows[0] if rows else None

        oldest, folded = rows[0], rows[1:]
        values = dedup.folded_values(rows, now)
        await conn.execute(
            alerts.update().where(alerts.c.seq == oldest["seq"]).values(values)
        )
        await conn.execute(
            alerts.delete().where(alerts.c.seq.in_([row["seq"] for row in folded]))
        )
        logger.info(
            "alert.folded",
            alert_id=oldest["id"],
            folded=[row["id"] for row in folded],
        )
        return {**oldest, **values}

    def _require_engine(self) -> AsyncEngine:
        if self._engine is None:
            raise StoreUnavailable("alert store is not started")
        return self._engine

    @contextlib.asynccontextmanager
    async def _writing(self, operation: str) -> AsyncIterator[None]:
        with _translate_errors(operation):
            if self._write_lock is None:
                yield
                return
            async with self._write_lock:
                yield


_CHECKPOINT_READS = 20
_SNAPSHOT_ISOLATION = {"postgresql": "REPEATABLE READ"}


@dataclass(frozen=True, slots=True)
class _Batch:
    topic: str
    partition: int
    previous_offset: int | None
    next_offset: int
    state: StateDelta


async def _alert_row(
    conn: AsyncConnection, condition: sa.ColumnElement[bool]
) -> Mapping[Any, Any] | None:
    statement = (
        sa.select(alerts)
        .where(condition)
        .order_by(alerts.c.seq.desc())
        .limit(1)
        .with_for_update()
    )
    return (await conn.execute(statement)).mappings().first()


def _alert_query(query: AlertQuery) -> sa.Select[Any]:
    statement = sa.select(alerts)
    for name in _FILTERS:
        value = getattr(query, name)
        if value is not None:
            statement = statement.where(alerts.c[name] == dedup.clean_text(value))
    if query.since is not None:
        statement = statement.where(alerts.c.last_seen >= query.since)
    if query.until is not None:
        statement = statement.where(alerts.c.first_seen < query.until)
    return statement


def _dead_letter_row(letter: DeadLetter) -> dict[str, Any]:
    return {
        "source": dedup.clean_text(letter.source),
        "kafka_partition": letter.partition,
        "kafka_offset": letter.offset,
        "reason": dedup.clean_text(letter.reason),
        "detail": dedup.clean_text(letter.detail),
        "payload": letter.payload[:MAX_STORED_PAYLOAD_BYTES],
        "payload_size": letter.size,
        "received_at": letter.received_at,
    }


def _dead_letter_from_row(row: Mapping[Any, Any]) -> DeadLetter:
    payload = bytes(row["payload"])
    size = row["payload_size"]
    return DeadLetter(
        source=row["source"],
        partition=row["kafka_partition"],
        offset=row["kafka_offset"],
        reason=row["reason"],
        detail=row["detail"],
        payload=payload,
        received_at=row["received_at"],
        payload_size=None if size == len(payload) else size,
    )


def _check_sqlite_directory(url: URL) -> None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    directory = Path(url.database).parent
    if not directory.is_dir():
        raise StoreUnavailable(f"SQLite directory {str(directory)!r} does not exist")


def create_engine(url: URL) -> AsyncEngine:
    """An async engine set up the way every part of the service uses the database."""
    options: dict[str, Any] = {
        "json_serializer": _json_text,
        "json_deserializer": orjson.loads,
    }
    in_memory = url.database in (None, "", ":memory:")
    if url.get_backend_name() == "sqlite" and in_memory:
        # One shared connection, or every checkout would see its own empty database.
        options["poolclass"] = StaticPool
    elif url.get_backend_name() == "postgresql":
        options["pool_pre_ping"] = True

    engine = create_async_engine(url, **options)
    if url.get_backend_name() == "sqlite" and not in_memory:
        sa.event.listen(engine.sync_engine, "connect", _tune_sqlite)
    return engine


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the consumer writes; wait rather than fail on
    # a lock another process holds.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _json_text(value: object) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


@contextlib.contextmanager
def _translate_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except (sa_exc.DBAPIError, OSError, TimeoutError) as exc:
        if not is_unavailable(exc):
            raise
        raise StoreUnavailable(f"database unavailable during {operation}") from exc
