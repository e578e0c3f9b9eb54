"""The HTTP API: alerts and dead letters behind bearer tokens, health and metrics.

`create_app(store)` builds it; the caller owns the store's start and close.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import Depends, FastAPI

from service.api import alerts, dead_letters, errors, health
from service.store import AlertStore

__all__ = ["create_app"]


def create_app(
    store: AlertStore,
    *,
    api_tokens: Sequence[str] = (),
    not_ready: Callable[[], str | None] = lambda: None,
) -> FastAPI:
    """The FastAPI app serving `store`.

    With `api_tokens`, /alerts and /dead-letters need `Authorization: Bearer
    <token>`; /healthz, /readyz and /metrics stay open. `not_ready` tells /readyz
    why the rest of the service is not up, or None when it is. Raises ValueError
    for an empty token.
    """
    if any(not token for token in api_tokens):
        raise ValueError("api_tokens must not contain an empty token")

    # No Swagger UI (it loads from a CDN); the schema is public only when the
    # API itself is, since it would otherwise describe routes past the token.
    app = FastAPI(
        title="Trailwarden",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        openapi_url=None if api_tokens else "/openapi.json",
        dependencies=[Depends(errors.reject_repeated_parameters)],
    )
    app.state.store = store
    app.state.api_tokens = tuple(token.encode("utf-8") for token in api_tokens)
    app.state.not_ready = not_ready

    errors.install(app)
    app.include_router(alerts.router)
    app.include_router(dead_letters.router)
    app.include_router(health.router)
    app.router.routes.append(health.metrics_route())
    return app
