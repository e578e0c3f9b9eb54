"""Alerts and dead letters, as the store created them before migrations existed.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# SQLite only makes a primary key an auto-incrementing rowid when it is INTEGER.
_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("dedup_key", sa.Text, nullable=False),
        sa.Column("detector", sa.Text, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("third_party", sa.Text),
        sa.Column("account_id", sa.Text),
        sa.Column("actor", sa.Text),
        sa.Column("source_ip", sa.Text),
        sa.Column("region", sa.Text),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("event_time", _Time),
        sa.Column("first_seen", _Time, nullable=False),
        sa.Column("last_seen", _Time, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("event_ids", sa.JSON, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("created_at", _Time, nullable=False),
        sa.Column("updated_at", _Time, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_alerts_dedup_key_seq", "alerts", ["dedup_key", "seq"])
    for column in (
        "detector",
        "severity",
        "third_party",
        "account_id",
        "status",
        "first_seen",
        "last_seen",
    ):
        op.create_index(f"ix_alerts_{column}", "alerts", [column])

    op.create_table(
        "dead_letters",
        sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("kafka_partition", sa.Integer),
        sa.Column("kafka_offset", sa.BigInteger),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("payload_size", sa.BigInteger, nullable=False),
        sa.Column("received_at", _Time, nullable=False),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("alerts")
