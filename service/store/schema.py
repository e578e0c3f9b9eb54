"""Tables of the alert store (alerts, dead letters, checkpoints, detector state).

Times are bound as UTC: TIMESTAMPTZ on PostgreSQL, fixed-width UTC text on SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData()

# SQLite only makes a primary key an auto-incrementing rowid when it is INTEGER.
_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware datetime that always reads back as UTC.

    SQLite has no time zone type, so values go in as naive UTC text, which
    SQLAlchemy writes at fixed width: text order is time order.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


alerts = sa.Table(
    "alerts",
    metadata,
    # Insertion order: the pagination key. Updates keep it, so pages never shift.
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
    sa.Column("event_time", UtcDateTime),
    sa.Column("first_seen", UtcDateTime, nullable=False),
    sa.Column("last_seen", UtcDateTime, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("event_ids", sa.JSON, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_alerts_dedup_key_seq", "dedup_key", "seq"),
    sa.Index("ix_alerts_detector", "detector"),
    sa.Index("ix_alerts_severity", "severity"),
    sa.Index("ix_alerts_third_party", "third_party"),
    sa.Index("ix_alerts_account_id", "account_id"),
    sa.Index("ix_alerts_status", "status"),
    sa.Index("ix_alerts_first_seen", "first_seen"),
    sa.Index("ix_alerts_last_seen", "last_seen"),
    sqlite_autoincrement=True,
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("kafka_partition", sa.Integer),
    sa.Column("kafka_offset", sa.BigInteger),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("payload_size", sa.BigInteger, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sqlite_autoincrement=True,
)

# One row per (topic, partition): the offset of the next record to process. It
# moves in the same transaction as the alerts and the state of the records before it.
checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("kafka_partition", sa.Integer, primary_key=True),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# The detector state of each partition as of its checkpoint, one row per entry.
detector_state = sa.Table(
    "detector_state",
    metadata,
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("kafka_partition", sa.Integer, primary_key=True),
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("expires_at", UtcDateTime),
)
