"""The store's exceptions: the database is unreachable, or a cursor is not ours."""

from __future__ import annotations

from service.errors import ServiceError


class StoreError(ServiceError):
    """Base class for the alert store's own errors."""


class StoreUnavailable(StoreError):
    """The database did not answer, or the store is not started."""


class InvalidCursor(StoreError, ValueError):
    """A pagination cursor that this store did not hand out."""
