"""The delivery outbox: one row per (new alert, destination), sent by the dispatcher.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_Time = sa.DateTime(timezone=True)
_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("destination_type", sa.Text, nullable=False),
        sa.Column("alert_id", sa.Text, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _Time, nullable=False),
        sa.Column("claimed_until", _Time),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", _Time, nullable=False),
        sa.Column("updated_at", _Time, nullable=False),
        sa.Column("delivered_at", _Time),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_deliveries_destination_status_seq",
        "deliveries",
        ["destination", "status", "seq"],
    )
    op.create_index("ix_deliveries_status_seq", "deliveries", ["status", "seq"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_status_seq", table_name="deliveries")
    op.drop_index("ix_deliveries_destination_status_seq", table_name="deliveries")
    op.drop_table("deliveries")
