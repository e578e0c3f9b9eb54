"""Errors the service raises on purpose; each names what failed and with which value.

ServiceError
 ├── DeliveryError       a webhook delivery attempt failed (`retriable` says if
 │                       another attempt may succeed)
 └── ShutdownTimeout     the consumer did not drain within the shutdown deadline

`one_failure` turns a TaskGroup's single error back into that error.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator


class ServiceError(Exception):
    """Base class for failures of Trailwarden's own parts."""


class DeliveryError(ServiceError):
    """One webhook delivery attempt failed.

    `retry_after` is the receiver's requested wait in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        retriable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.status = status
        self.retry_after = retry_after


class ShutdownTimeout(ServiceError):
    """The consumer did not finish its batch before the shutdown deadline."""


@contextlib.asynccontextmanager
async def one_failure(what: str) -> AsyncIterator[None]:
    """Re-raise a TaskGroup's only error as itself, so callers catch one type.

    Several errors at once become one ServiceError naming `what` failed.
    """
    try:
        yield
    except ExceptionGroup as group:
        errors = group.exceptions
        if len(errors) == 1:
            raise errors[0] from None
        raise ServiceError(f"{len(errors)} parts of {what} failed") from group
