"""Bearer-token check for the alert and dead-letter routes."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from service.store import AlertStore


def require_token(request: Request) -> None:
    """Pass when no tokens are configured, or the request carries one of them."""
    tokens: tuple[bytes, ...] = request.app.state.api_tokens
    if not tokens:
        return

    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise _unauthorized("missing bearer token", 'Bearer realm="trailwarden"')
    given = credentials.strip().encode("utf-8")
    # Compare against every token so the time taken does not say which matched.
    matched = False
    for token in tokens:
        matched |= secrets.compare_digest(given, token)
    if not matched:
        raise _unauthorized(
            "invalid bearer token", 'Bearer realm="trailwarden", error="invalid_token"'
        )


def get_store(request: Request) -> AlertStore:
    """The store the app was created with."""
    store: AlertStore = request.app.state.store
    return store


Store = Annotated[AlertStore, Depends(get_store)]


def _unauthorized(detail: str, challenge: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})
