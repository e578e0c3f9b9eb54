"""The store's exceptions: the database is unreachable, or a cursor is not ours."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from service.errors import ServiceError

# SQLSTATEs meaning "the server cannot serve us now" rather than "this statement is
# wrong": 08 connection, 53 resources, 57 operator intervention (shutdown, backend
# terminated), 58 system error; 55000 is "database is not accepting connections".
_UNAVAILABLE_SQLSTATES = ("08", "53", "57", "58", "55000")


class StoreError(ServiceError):
    """Base class for the alert store's own errors."""


class StoreUnavailable(StoreError):
    """The database did not answer, or the store is not started."""


class InvalidCursor(StoreError, ValueError):
    """A pagination cursor that this store did not hand out."""


def is_unavailable(exc: BaseException) -> bool:
    """True for a driver error that means the database is unreachable for now."""
    if isinstance(exc, OSError | sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
