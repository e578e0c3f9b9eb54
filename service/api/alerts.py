"""GET /alerts and GET /alerts/{id}: query stored alerts, newest first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel

from detectors.detector import Severity
from service.alerts import Alert, AlertQuery, AlertStatus
from service.api.auth import Store, require_token

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

router = APIRouter(dependencies=[Depends(require_token)], tags=["alerts"])

_Text = Annotated[str | None, Query(min_length=1, max_length=256)]


class AlertList(BaseModel):
    """One page of alerts; pass `next_cursor` as `cursor` for the next page."""

    items: list[Alert]
    next_cursor: str | None


@router.get("/alerts")
async def list_alerts(
    store: Store,
    detector: _Text = None,
    severity: Annotated[Severity | None, Query()] = None,
    third_party: _Text = None,
    account_id: _Text = None,
    status: Annotated[AlertStatus | None, Query()] = None,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> AlertList:
    """Alerts matching every given filter, newest first.

    `since`/`until` select alerts active in [since, until): last seen at or
    after `since` and first seen before `until`. Times without an offset are UTC.
    """
    since_utc = _utc("since", since)
    until_utc = _utc("until", until)
    if since_utc and until_utc and since_utc > until_utc:
        raise HTTPException(
            400,
            f"since ({since_utc.isoformat()}) is after until ({until_utc.isoformat()})",
        )

    query = AlertQuery(
        detector=detector,
        severity=severity,
        third_party=third_party,
        account_id=account_id,
        status=status,
        since=since_utc,
        until=until_utc,
    )
    page = await store.list_alerts(query, limit=limit, cursor=cursor)
    return AlertList(items=page.items, next_cursor=page.next_cursor)


@router.get("/alerts/{alert_id}")
async def get_alert(
    store: Store, alert_id: Annotated[str, Path(max_length=256)]
) -> Alert:
    """One alert by id."""
    alert = await store.get_alert(alert_id)
    if alert is None:
        raise HTTPException(404, f"no alert with id {alert_id!r}")
    return alert


def _utc(name: str, moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise HTTPException(
            400, f"invalid query parameter {name!r}: out of range ({moment!s})"
        ) from exc
