"""Forwarders send new alerts to outside systems from the store's delivery outbox.

The consumer never waits on a destination: alerts and their deliveries are stored
in one transaction, and the dispatcher sends them from its own tasks.
"""

from __future__ import annotations

from typing import Protocol


class Forwarder(Protocol):
    """Sends what the outbox holds; told when a stored batch added deliveries."""

    def wake(self) -> None: ...
