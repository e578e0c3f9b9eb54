"""Metrics of the delivery outbox: the backlog per destination, and attempt outcomes.

Labels are bounded: destination names come from the destinations file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import Counter, Gauge

from service.forwarders.outbox import BACKLOG_STATUSES

DELIVERIES_BACKLOG = Gauge(
    "trailwarden_deliveries_backlog",
    "Deliveries not delivered yet (pending) or given up (failed), per destination.",
    ["destination", "status"],
)
DELIVERIES = Counter(
    "trailwarden_deliveries",
    "Delivery attempts by outcome: delivered, retried, failed.",
    ["destination_type", "outcome"],
)

DESTINATION_TYPES = ("webhook", "sns")
DELIVERY_OUTCOMES = ("delivered", "retried", "failed")


def init_delivery_metrics(destinations: Iterable[str]) -> None:
    """Create every label child up front so each series is exported from zero."""
    for destination in destinations:
        for status in BACKLOG_STATUSES:
            DELIVERIES_BACKLOG.labels(destination, status)
    for destination_type in DESTINATION_TYPES:
        for outcome in DELIVERY_OUTCOMES:
            DELIVERIES.labels(destination_type, outcome)


def set_backlog(
    destinations: Iterable[str], counts: Mapping[tuple[str, str], int]
) -> None:
    """Set the backlog gauge from `DeliveryOutbox.backlog()`; absent pairs are 0."""
    for destination in destinations:
        for status in BACKLOG_STATUSES:
            value = counts.get((destination, status), 0)
            DELIVERIES_BACKLOG.labels(destination, status).set(value)
