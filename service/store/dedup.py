"""Merging findings into alerts: the dedup window and the bounded event ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from detectors.detector import Finding
from service.alerts import MAX_EVENT_IDS, Alert, alert_id

_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def window_around(moment: datetime, window: timedelta) -> tuple[datetime, datetime]:
    """[moment - window, moment + window], clamped to what datetime can hold."""
    try:
        start = moment - window
    except OverflowError:
        start = _EARLIEST
    try:
        end = moment + window
    except OverflowError:
        end = _LATEST
    return start, end


def new_alert_values(finding: Finding, now: datetime) -> dict[str, Any]:
    """The row of a new alert opened by `finding`, processed at `now`."""
    event_time = _utc(finding.event_time)
    seen = event_time or now
    dedup_key = clean_text(finding.dedup_key)
    return {
        "id": alert_id(dedup_key, finding.event_id or seen.isoformat()),
        "dedup_key": dedup_key,
        "detector": clean_text(finding.detector),
        "severity": finding.severity,
        "title": clean_text(finding.title),
        "third_party": _clean_optional(finding.third_party),
        "account_id": _clean_optional(finding.account_id),
        "actor": _clean_optional(finding.actor),
        "source_ip": _clean_optional(finding.source_ip),
        "region": _clean_optional(finding.region),
        "action": clean_text(finding.action),
        "event_time": event_time,
        "first_seen": seen,
        "last_seen": seen,
        "count": 1,
        "event_ids": [] if finding.event_id is None else [finding.event_id],
        "status": "open",
        "details": json_details(finding.details),
        "created_at": now,
        "updated_at": now,
    }


def merged_values(
    row: Mapping[Any, Any], finding: Finding, now: datetime
) -> dict[str, Any] | None:
    """The columns that change when `finding` merges into the alert `row`.

    Returns None when the finding's event is already on the alert: a duplicate
    record, such as a redelivered Kafka message or a replayed file.
    """
    event_ids = list(row["event_ids"])
    if finding.event_id is not None and finding.event_id in event_ids:
        return None

    seen = _utc(finding.event_time) or row["last_seen"]
    if finding.event_id is not None and len(event_ids) < MAX_EVENT_IDS:
        event_ids.append(finding.event_id)
    return {
        "count": row["count"] + 1,
        "first_seen": min(row["first_seen"], seen),
        "last_seen": max(row["last_seen"], seen),
        "event_ids": event_ids,
        "updated_at": now,
    }


def folded_values(rows: Sequence[Mapping[Any, Any]], now: datetime) -> dict[str, Any]:
    """The columns of the oldest of `rows` once the others are folded into it.

    A late finding can fall within the window of two alerts with one key that
    in order would have been one; folding them gives the in-order alert back.
    """
    event_ids: list[str] = []
    for row in rows:
        for event_id in row["event_ids"]:
            if event_id not in event_ids and len(event_ids) < MAX_EVENT_IDS:
                event_ids.append(event_id)
    return {
        "count": sum(row["count"] for row in rows),
        "first_seen": min(row["first_seen"] for row in rows),
        "last_seen": max(row["last_seen"] for row in rows),
        "event_ids": event_ids,
        "updated_at": now,
    }


def alert_from_row(row: Mapping[Any, Any]) -> Alert:
    """The API shape of one stored alert row."""
    return Alert(
        id=row["id"],
        detector=row["detector"],
        severity=row["severity"],
        title=row["title"],
        third_party=row["third_party"],
        account_id=row["account_id"],
        actor=row["actor"],
        source_ip=row["source_ip"],
        region=row["region"],
        action=row["action"],
        event_time=row["event_time"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        count=row["count"],
        event_ids=list(row["event_ids"]),
        status=row["status"],
        details=dict(row["details"]),
    )


def json_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """`details` as plain JSON values, the way they read back from the store."""
    try:
        encoded = orjson.dumps(
            dict(details), default=str, option=orjson.OPT_NON_STR_KEYS
        )
    except orjson.JSONEncodeError:
        encoded = orjson.dumps({"unencodable": str(details)})
    decoded: dict[str, Any] = orjson.loads(encoded)
    return decoded


def clean_text(text: str) -> str:
    """`text` without what PostgreSQL or asyncpg would refuse."""
    # PostgreSQL text cannot hold NUL, and asyncpg cannot encode lone surrogates.
    cleaned = text.replace("\x00", "")
    return cleaned.encode("utf-8", "replace").decode("utf-8")


def _clean_optional(text: str | None) -> str | None:
    return None if text is None else clean_text(text)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
