"""The `deliveries` table, on the alert store's MetaData so one database holds both.

`seq` is the insertion order, which is alert order: the dispatcher delivers by it.
"""

from __future__ import annotations

import sqlalchemy as sa

from service.store.schema import UtcDateTime, metadata

# SQLite only makes a primary key an auto-incrementing rowid when it is INTEGER.
_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, nullable=False, unique=True),
    sa.Column("destination", sa.Text, nullable=False),
    sa.Column("destination_type", sa.Text, nullable=False),
    sa.Column("alert_id", sa.Text, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False),
    sa.Column("claimed_until", UtcDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("delivered_at", UtcDateTime),
    sa.Index("ix_deliveries_destination_status_seq", "destination", "status", "seq"),
    sa.Index("ix_deliveries_status_seq", "status", "seq"),
    sqlite_autoincrement=True,
)
