"""Error responses: every failure is JSON `{"detail": "..."}`, client errors 4xx."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service.store import InvalidCursor, StoreUnavailable

logger = structlog.get_logger(__name__)

_MAX_ECHO = 80


def install(app: FastAPI) -> None:
    """Register the handlers that turn our exceptions into JSON responses."""
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(InvalidCursor, _invalid_cursor)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(Exception, _internal_error)


def reject_repeated_parameters(request: Request) -> None:
    """Refuse `?severity=high&severity=low`: which one wins would be a guess."""
    keys = [key for key, _ in request.query_params.multi_items()]
    if len(keys) == len(set(keys)):
        return
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    names = ", ".join(repr(key[:_MAX_ECHO]) for key in repeated)
    raise HTTPException(400, f"query parameter given more than once: {names}")


def bad_request(detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=400)


def describe_error(error: dict[str, Any]) -> str:
    """One validation error as a sentence naming the parameter and the value."""
    location = [str(part) for part in error.get("loc", ())]
    where = location[0] if location else "request"
    name = ".".join(location[1:]) or "body"
    text = f"invalid {where} parameter {name!r}: {error.get('msg', 'invalid value')}"

    value = error.get("input")
    if isinstance(value, str | int | float):
        shown = str(value)
        shown = shown if len(shown) <= _MAX_ECHO else shown[:_MAX_ECHO] + "..."
        text += f" (got {shown!r})"
    return text


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):  # pragma: no cover
        raise exc
    return bad_request("; ".join(describe_error(error) for error in exc.errors()))


async def _invalid_cursor(request: Request, exc: Exception) -> JSONResponse:
    return bad_request("invalid cursor")


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("api.store_unavailable", path=request.url.path, error=str(exc))
    return JSONResponse({"detail": "alert store unavailable"}, status_code=503)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("api.internal_error", path=request.url.path)
    return JSONResponse({"detail": "internal server error"}, status_code=500)
