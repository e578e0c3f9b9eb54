"""GET /deliveries and POST /deliveries/{id}/retry: the outbox, for an operator.

`install(app, outbox)` includes the router behind the app's bearer tokens.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from pydantic import BaseModel

from service.api.auth import require_token
from service.forwarders.outbox import Delivery, DeliveryOutbox, DeliveryStatus

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

router = APIRouter(dependencies=[Depends(require_token)], tags=["deliveries"])

# Delivery ids are UUIDs and destination names slugs; anything else (a NUL byte,
# which PostgreSQL refuses in text) is a client error, not a query.
_Id = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


class DeliveryView(BaseModel):
    """One delivery without its payload (GET /alerts/{alert_id} has the alert)."""

    id: str
    destination: str
    destination_type: str
    alert_id: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


class DeliveryList(BaseModel):
    """One page of deliveries, newest first; pass `next_cursor` as `cursor`."""

    items: list[DeliveryView]
    next_cursor: str | None


def install(app: FastAPI, outbox: DeliveryOutbox) -> None:
    """Serve `outbox` from `app` (made by `create_app`, which holds the tokens)."""
    app.state.delivery_outbox = outbox
    app.include_router(router)


def get_outbox(request: Request) -> DeliveryOutbox:
    """The outbox `install` put on the app; 404 when deliveries are not configured."""
    outbox: DeliveryOutbox | None = getattr(request.app.state, "delivery_outbox", None)
    if outbox is None:
        raise HTTPException(404, "no delivery destinations are configured")
    return outbox


Outbox = Annotated[DeliveryOutbox, Depends(get_outbox)]


@router.get("/deliveries")
async def list_deliveries(
    outbox: Outbox,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    destination: Annotated[
        str | None, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> DeliveryList:
    """Deliveries newest first, optionally of one status and one destination."""
    page = await outbox.list(status, limit, cursor, destination=destination)
    return DeliveryList(
        items=[_view(delivery) for delivery in page.items],
        next_cursor=page.next_cursor,
    )


@router.post("/deliveries/{delivery_id}/retry", status_code=202)
async def retry_delivery(outbox: Outbox, delivery_id: _Id) -> dict[str, Any]:
    """Send a failed delivery again with fresh attempts; 404 unknown, 409 not failed."""
    if await outbox.retry(delivery_id):
        return {"id": delivery_id, "status": "pending"}

    delivery = await outbox.get(delivery_id)
    if delivery is None:
        raise HTTPException(404, f"no delivery with id {delivery_id!r}")
    raise HTTPException(
        409, f"delivery {delivery_id!r} is {delivery.status}, only failed ones retry"
    )


def _view(delivery: Delivery) -> DeliveryView:
    return DeliveryView(
        id=delivery.id,
        destination=delivery.destination,
        destination_type=delivery.destination_type,
        alert_id=delivery.alert_id,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        updated_at=delivery.updated_at,
        delivered_at=delivery.delivered_at,
    )
