"""Storing a partition's batch with its checkpoint, and what follows from it.

The store is retried with capped, jittered backoff while it is down; a stored
batch moves the partition's position, and the alerts it created are logged and
counted, and the forwarder is woken to send their deliveries.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import structlog

from service import metrics
from service.alerts import AlertChange
from service.decoding import Batch
from service.forwarders import Forwarder
from service.partitions import OwnedPartition
from service.store import AlertStore, StoreUnavailable

__all__ = ["StoreRetry", "forward_created", "save_checkpoint"]

_log = structlog.get_logger(__name__)

_FIRST_DELAY_SECONDS = 0.5
_T = TypeVar("_T")


class StoreRetry:
    """Calls the store until it answers; `failing` is True while it does not."""

    def __init__(self, max_delay: float) -> None:
        self.max_delay = max_delay
        self.failing = False

    async def __call__(
        self,
        event: str,
        attempt: Callable[[], Awaitable[_T]],
        wanted: Callable[[], bool],
    ) -> _T | None:
        """`attempt()` until the store takes it; logs `event` on each failure.

        Returns None once `wanted()` turns false (the partition was revoked, or
        the service stops). Errors other than StoreUnavailable propagate.
        """
        failures = 0
        while wanted():
            try:
                result = await attempt()
            except StoreUnavailable as exc:
                failures += 1
                self.failing = True
                delay = self.delay(failures)
                _log.warning(
                    event, attempt=failures, retry_in=round(delay, 2), error=str(exc)
                )
                await asyncio.sleep(delay)
                continue
            self.failing = False
            return result

        self.failing = False
        return None

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` failures in a row: doubling, capped."""
        ceiling = min(self.max_delay, _FIRST_DELAY_SECONDS * 2 ** min(failures - 1, 10))
        return random.uniform(ceiling / 2, ceiling)


async def save_checkpoint(
    store: AlertStore,
    retry: StoreRetry,
    owned: OwnedPartition,
    batch: Batch,
    still_owned: Callable[[], bool],
) -> list[AlertChange] | None:
    """Store the partition's batch with its checkpoint, then move its position.

    Returns the alert changes, or None when the partition was revoked while the
    store was down. Raises CheckpointConflict when another writer moved the
    checkpoint since this partition was restored.
    """
    tp = owned.tp
    delta = owned.take_changes()
    next_offset = batch.offsets[tp]

    async def save() -> list[AlertChange]:
        started = time.perf_counter()
        changes = await store.save_batch(
            topic=tp.topic,
            partition=tp.partition,
            previous_offset=owned.position,
            next_offset=next_offset,
            findings=batch.findings,
            dead_letters=batch.dead_letters,
            state=delta,
        )
        metrics.CHECKPOINT_SECONDS.observe(time.perf_counter() - started)
        return changes

    changes = await retry("batch.store_failed", save, still_owned)
    if changes is None:
        return None

    owned.position = next_offset
    owned.log_restarted = False
    metrics.CHECKPOINT_ENTRIES.observe(len(delta.upserts) + len(delta.deletes))
    metrics.CHECKPOINT_BYTES.observe(sum(len(e.value) for e in delta.upserts))
    return changes


def forward_created(changes: Sequence[AlertChange], forwarder: Forwarder | None) -> int:
    """Log and count each alert the batch created, then wake the forwarder.

    The deliveries themselves were written with the alerts; returns how many
    alerts were created.
    """
    created = 0
    for change in changes:
        if not change.created:
            continue
        alert = change.alert
        created += 1
        metrics.ALERTS.labels(alert.detector, alert.severity).inc()
        _log.info(
            "alert.created",
            alert_id=alert.id,
            detector=alert.detector,
            severity=alert.severity,
            third_party=alert.third_party,
            account_id=alert.account_id,
        )

    if created and forwarder is not None:
        forwarder.wake()
    return created
