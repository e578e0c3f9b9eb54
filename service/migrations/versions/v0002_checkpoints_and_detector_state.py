"""Checkpoints (next offset per partition) and the detector state behind them.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("kafka_partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", _Time, nullable=False),
    )
    op.create_table(
        "detector_state",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("kafka_partition", sa.Integer, primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("expires_at", _Time),
    )


def downgrade() -> None:
    op.drop_table("detector_state")
    op.drop_table("checkpoints")
