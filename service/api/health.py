"""GET /healthz, /readyz and /metrics: open to probes and scrapers, no token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service.api.auth import Store
from service.store import StoreUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(request: Request, store: Store) -> dict[str, str] | JSONResponse:
    """Ready when the service says so and the store answers; 503 with why if not."""
    not_ready: Callable[[], str | None] = request.app.state.not_ready
    reason = not_ready()
    if reason is not None:
        return _unavailable(reason)

    try:
        await store.ping()
    except StoreUnavailable as exc:
        return _unavailable(f"alert store: {exc}")
    return {"status": "ok"}


def metrics_route() -> Route:
    """/metrics as an exact route: a Mount would redirect it to /metrics/."""
    return Route("/metrics", _MetricsApp(make_asgi_app()), include_in_schema=False)


class _MetricsApp:
    # A class instance, not a function, so Starlette passes it the raw ASGI call.
    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
