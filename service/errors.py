"""Errors the service raises on purpose; each names what failed and with which value.

ServiceError
 ├── DeliveryError       a webhook delivery attempt failed (`retriable` says if
 │                       another attempt may succeed)
 └── ShutdownTimeout     the consumer did not drain within the shutdown deadline
"""

from __future__ import annotations


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
