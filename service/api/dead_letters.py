"""GET /dead-letters: the newest undecodable inputs, for an operator to inspect."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from service.api.auth import Store, require_token
from service.dead_letters import DeadLetter

MAX_PAGE_SIZE = 100
SHOWN_PAYLOAD_BYTES = 64 * 1024

router = APIRouter(dependencies=[Depends(require_token)], tags=["dead letters"])


class DeadLetterView(BaseModel):
    """A dead letter with the first SHOWN_PAYLOAD_BYTES of its payload, base64."""

    source: str
    partition: int | None
    offset: int | None
    reason: str
    detail: str
    received_at: datetime
    payload_size: int
    payload_base64: str
    payload_truncated: bool


class DeadLetterList(BaseModel):
    items: list[DeadLetterView]


@router.get("/dead-letters")
async def list_dead_letters(
    store: Store,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
) -> DeadLetterList:
    """The newest `limit` dead letters, newest first."""
    letters = await store.list_dead_letters(limit=limit)
    return DeadLetterList(items=[_view(letter) for letter in letters])


def _view(letter: DeadLetter) -> DeadLetterView:
    shown = letter.payload[:SHOWN_PAYLOAD_BYTES]
    return DeadLetterView(
        source=letter.source,
        partition=letter.partition,
        offset=letter.offset,
        reason=letter.reason,
        detail=letter.detail,
        received_at=letter.received_at,
        payload_size=letter.size,
        payload_base64=base64.b64encode(shown).decode("ascii"),
        payload_truncated=len(shown) < letter.size,
    )
