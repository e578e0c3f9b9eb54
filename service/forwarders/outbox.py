"""The delivery outbox: one row per (new alert, destination), written with the alert.

`outbox_rows` builds the rows; a `DeliveryOutbox` hands them to the dispatcher in
alert order per destination. `MemoryOutbox` is the in-process implementation
for tests and for stores without a database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from service.alerts import Alert, AlertChange
from service.forwarders.destinations import SnsDestination, WebhookDestination
from service.store.cursor import decode_cursor, encode_cursor

DeliveryStatus = Literal["pending", "delivered", "failed"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = ("pending", "delivered", "failed")
BACKLOG_STATUSES: tuple[DeliveryStatus, ...] = ("pending", "failed")

DEFAULT_LEASE = timedelta(seconds=60)
"""How long a claim keeps other dispatchers off a delivery before it lapses."""

MAX_ERROR_CHARS = 500

_DELIVERY_NAMESPACE = uuid.UUID("0b7f4d1e-8a61-5c3e-9f04-2d6b9e1a7c55")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One alert on its way to one destination; `id` stays the same across retries."""

    id: str
    seq: int
    destination: str
    destination_type: str
    alert_id: str
    payload: dict[str, Any]
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    """Deliveries newest first; `next_cursor` is None on the last page."""

    items: list[Delivery]
    next_cursor: str | None


class DeliveryOutbox(Protocol):
    """Durable deliveries. Claims are leases: a lapsed one is claimed again."""

    async def add(self, rows: Sequence[Mapping[str, Any]]) -> None: ...

    async def claim_due(
        self,
        destination: str,
        now: datetime,
        limit: int,
        *,
        lease: timedelta = DEFAULT_LEASE,
    ) -> list[Delivery]: ...

    async def release(self, delivery_ids: Sequence[str]) -> None: ...

    async def mark_delivered(self, delivery_id: str) -> None: ...

    async def mark_retry(
        self, delivery_id: str, error: str, next_attempt_at: datetime
    ) -> None: ...

    async def mark_failed(self, delivery_id: str, error: str) -> None: ...

    async def get(self, delivery_id: str) -> Delivery | None: ...

    async def list(
        self,
        status: DeliveryStatus | None,
        limit: int,
        cursor: str | None,
        *,
        destination: str | None = None,
    ) -> DeliveryPage: ...

    async def retry(self, delivery_id: str) -> bool: ...

    async def backlog(self) -> dict[tuple[str, str], int]: ...


def delivery_id(destination: str, alert_id: str) -> str:
    """A deterministic id: the same alert to the same destination is one delivery."""
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, f"{destination}\n{alert_id}"))


def outbox_rows(
    changes: Sequence[AlertChange],
    destinations: Iterable[WebhookDestination | SnsDestination],
    *,
    now: datetime | None = None,
    previous: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Rows to insert for the alerts `changes` created, one per matching destination.

    Updates (more occurrences) make no row. A created alert is sent as it stands
    at the end of the batch, with `"repeat": true` when it already has more than
    one occurrence or when `previous` maps its id to an older alert with the same
    dedup key (a recurrence after the dedup window).
    """
    now = now if now is not None else datetime.now(UTC)
    previous = previous or {}
    destinations = list(destinations)

    latest = {change.alert.id: change.alert for change in changes}
    rows = []
    for change in changes:
        if not change.created:
            continue
        alert = latest[change.alert.id]
        payload = _payload(alert, previous.get(alert.id))
        for destination in destinations:
            if destination.filter.matches(alert):
                rows.append(_row(destination, alert, payload, now))
    return rows


def _payload(alert: Alert, previous_id: str | None) -> dict[str, Any]:
    payload = alert.model_dump(mode="json")
    payload["repeat"] = alert.count > 1 or previous_id is not None
    if previous_id is not None:
        payload["previous_alert_id"] = previous_id
    return payload


def _row(
    destination: WebhookDestination | SnsDestination,
    alert: Alert,
    payload: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": delivery_id(destination.name, alert.id),
        "destination": destination.name,
        "destination_type": destination.type,
        "alert_id": alert.id,
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "claimed_until": None,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
        "delivered_at": None,
    }


def clip_error(error: str) -> str:
    """An error message short enough to keep on a row."""
    return (
        error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 3] + "..."
    )


@dataclass(slots=True)
class _Entry:
    delivery: Delivery
    claimed_until: datetime | None = None


class MemoryOutbox:
    """A DeliveryOutbox in memory: the same order and claim rules, not durable."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._seq = 0

    async def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append rows made by `outbox_rows`; an id already present is skipped."""
        for row in rows:
            if row["id"] in self._entries:
                continue
            self._seq += 1
            fields = {k: v for k, v in row.items() if k != "claimed_until"}
            self._entries[row["id"]] = _Entry(Delivery(seq=self._seq, **fields))

    async def claim_due(
        self,
        destination: str,
        now: datetime,
        limit: int,
        *,
        lease: timedelta = DEFAULT_LEASE,
    ) -> list[Delivery]:
        """The oldest pending deliveries, if the oldest one is due and not claimed."""
        pending = sorted(
            (
                entry
                for entry in self._entries.values()
                if entry.delivery.destination == destination
                and entry.delivery.status == "pending"
            ),
            key=lambda entry: entry.delivery.seq,
        )[:limit]
        if not pending or not _claimable(pending[0], now):
            return []

        claimed = []
        for entry in pending:
            if not _claimable(entry, now):
                break
            entry.claimed_until = now + lease
            claimed.append(entry.delivery)
        return claimed

    async def release(self, delivery_ids: Sequence[str]) -> None:
        for delivery_id_ in delivery_ids:
            if delivery_id_ in self._entries:
                self._entries[delivery_id_].claimed_until = None

    async def mark_delivered(self, delivery_id: str) -> None:
        now = datetime.now(UTC)
        self._update(delivery_id, status="delivered", delivered_at=now, bump=True)

    async def mark_retry(
        self, delivery_id: str, error: str, next_attempt_at: datetime
    ) -> None:
        self._update(
            delivery_id,
            last_error=clip_error(error),
            next_attempt_at=next_attempt_at,
            bump=True,
        )

    async def mark_failed(self, delivery_id: str, error: str) -> None:
        self._update(
            delivery_id, status="failed", last_error=clip_error(error), bump=True
        )

    async def get(self, delivery_id: str) -> Delivery | None:
        entry = self._entries.get(delivery_id)
        return None if entry is None else entry.delivery

    async def list(
        self,
        status: DeliveryStatus | None,
        limit: int,
        cursor: str | None,
        *,
        destination: str | None = None,
    ) -> DeliveryPage:
        """Deliveries newest first, optionally of one status and destination."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        before = decode_cursor(cursor) if cursor is not None else None
        items = sorted(
            (
                entry.delivery
                for entry in self._entries.values()
                if (status is None or entry.delivery.status == status)
                and (destination is None or entry.delivery.destination == destination)
                and (before is None or entry.delivery.seq < before)
            ),
            key=lambda delivery: -delivery.seq,
        )
        page = items[:limit]
        more = len(items) > limit
        return DeliveryPage(page, encode_cursor(page[-1].seq) if more else None)

    async def retry(self, delivery_id: str) -> bool:
        """Move a failed delivery back to pending with fresh attempts."""
        entry = self._entries.get(delivery_id)
        if entry is None or entry.delivery.status != "failed":
            return False
        now = datetime.now(UTC)
        entry.delivery = replace(
            entry.delivery,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            updated_at=now,
        )
        entry.claimed_until = None
        return True

    async def backlog(self) -> dict[tuple[str, str], int]:
        """Pending and failed deliveries per (destination, status)."""
        counts: dict[tuple[str, str], int] = {}
        for entry in self._entries.values():
            delivery = entry.delivery
            if delivery.status in BACKLOG_STATUSES:
                key = (delivery.destination, delivery.status)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def _update(self, delivery_id: str, *, bump: bool, **changes: Any) -> None:
        entry = self._entries.get(delivery_id)
        if entry is None:
            return
        attempts = entry.delivery.attempts + (1 if bump else 0)
        entry.delivery = replace(
            entry.delivery,
            attempts=attempts,
            updated_at=datetime.now(UTC),
            **changes,
        )
        entry.claimed_until = None


def _claimable(entry: _Entry, now: datetime) -> bool:
    if entry.delivery.next_attempt_at > now:
        return False
    return entry.claimed_until is None or entry.claimed_until <= now
