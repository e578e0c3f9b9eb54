"""The alert store: alerts, dead letters and checkpoints in SQLite or PostgreSQL.

`open_store(url)` picks the async driver; `start()` migrates the schema and connects.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from service.store.checkpoints import Checkpoint, CheckpointConflict
from service.store.errors import InvalidCursor, StoreError, StoreUnavailable
from service.store.sql import AlertStore, Outbox

__all__ = [
    "AlertStore",
    "Checkpoint",
    "CheckpointConflict",
    "InvalidCursor",
    "Outbox",
    "StoreError",
    "StoreUnavailable",
    "database_url",
    "open_store",
]

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def open_store(
    url: str,
    *,
    dedup_window: timedelta = timedelta(hours=1),
    outbox: Outbox | None = None,
) -> AlertStore:
    """An alert store for `url`, not yet connected.

    Accepts `sqlite:///path.db`, `postgresql://user@host/db` and their explicit
    `+aiosqlite`/`+asyncpg` forms. Raises ValueError for anything else. `outbox`
    runs in every transaction that creates or updates alerts.
    """
    if dedup_window < timedelta(0):
        raise ValueError(f"dedup_window must not be negative, got {dedup_window}")
    return AlertStore(database_url(url), dedup_window=dedup_window, outbox=outbox)


def database_url(url: str) -> URL:
    """`url` with the async driver this store uses; raises ValueError if unknown."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError("database URL is not of the form scheme://...") from exc

    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r}; "
            "use sqlite:/// or postgresql://"
        )
    return parsed.set(drivername=driver)
