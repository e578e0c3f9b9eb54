"""Alembic environment: migrates the connection `service.store.migrate` passes in.

Run through `trailwarden migrate` or the store's start, never the alembic CLI alone,
so the URL handling, drivers and SQLite tuning are the store's own.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from service.store.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `trailwarden migrate --db URL`")
_run(connection)
