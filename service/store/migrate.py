"""Schema migrations with Alembic, run on a connection of the store's own engine.

A database made before migrations existed (alerts and dead letters only) is
adopted: stamped at revision 0001, then upgraded like any other.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

import service.migrations

_SCRIPTS = Path(service.migrations.__file__).parent
_PRE_MIGRATION_REVISION = "0001"
_LOCK_KEY = 0x7472_6C77  # "trlw": any constant no other tool on the database uses


def upgrade(connection: Connection) -> str | None:
    """Bring the schema on `connection` to the newest revision; return the old one."""
    config = _config(connection)
    if connection.dialect.name == "postgresql":
        # Replicas starting together: one migrates, the others wait, then find
        # nothing to do. The lock ends with the caller's transaction.
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None and sa.inspect(connection).has_table("alerts"):
        command.stamp(config, _PRE_MIGRATION_REVISION)
        current = _PRE_MIGRATION_REVISION
    command.upgrade(config, "head")
    return current


def head_revision() -> str | None:
    """The newest revision this version of Trailwarden ships."""
    scripts = ScriptDirectory(str(_SCRIPTS))
    return scripts.get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database on `connection` is at, None before any."""
    return MigrationContext.configure(connection).get_current_revision()


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = connection
    return config
