"""Alerts: what the store keeps, the API serves and the webhook sends.

Findings with the same dedup key inside the store's window merge into one alert.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from detectors.detector import Severity

AlertStatus = Literal["open", "acknowledged", "resolved"]
ALERT_STATUSES: tuple[AlertStatus, ...] = ("open", "acknowledged", "resolved")

MAX_EVENT_IDS = 20
"""At most this many CloudTrail event ids are kept on one alert."""

_ALERT_NAMESPACE = uuid.UUID("6f0d9a52-3c1e-5b7a-9d2f-7a1c4e8b0f31")


class Alert(BaseModel):
    """One alert, as the API returns it and the webhook sends it.

    `event_time` is the time of the event that opened the alert (None when that
    record had no eventTime); `first_seen`/`last_seen` span every merged event.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    detector: str
    severity: Severity
    title: str
    third_party: str | None
    account_id: str | None
    actor: str | None
    source_ip: str | None
    region: str | None
    action: str
    event_time: datetime | None
    first_seen: datetime
    last_seen: datetime
    count: int
    event_ids: list[str]
    status: AlertStatus
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert a batch of findings created (`created`) or updated."""

    alert: Alert
    created: bool


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Filters for listing alerts; None means "any".

    `since`/`until` select alerts whose [first_seen, last_seen] span overlaps
    the half-open window [since, until).
    """

    detector: str | None = None
    severity: str | None = None
    third_party: str | None = None
    account_id: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlertPage:
    """One page of alerts, newest first; `next_cursor` is None on the last page."""

    items: list[Alert]
    next_cursor: str | None


def alert_id(dedup_key: str, first_event: str) -> str:
    """A deterministic alert id, so replaying the same input yields the same ids.

    `first_event` is the opening event's id, or its time in ISO form without one.
    """
    return str(uuid.uuid5(_ALERT_NAMESPACE, f"{dedup_key}\n{first_event}"))
