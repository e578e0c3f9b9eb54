"""Forwarders hand new alerts to outside systems without ever blocking the consumer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from service.alerts import Alert


class Forwarder(Protocol):
    """Takes alerts without waiting; delivers them from its own task."""

    def submit(self, alert: Alert) -> None: ...

    async def run(self) -> None: ...

    async def close(self, grace: float) -> None: ...
