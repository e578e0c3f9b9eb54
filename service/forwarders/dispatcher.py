"""The dispatcher: one task per destination sends due outbox deliveries, in order.

A failing delivery blocks its destination's later ones until it succeeds or runs
out of attempts (then it is `failed`, visible in GET /deliveries, and the next
one goes). Waits back off exponentially with jitter, or as `Retry-After` says.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from sqlalchemy.exc import SQLAlchemyError

from service.errors import DeliveryError
from service.forwarders.destinations import (
    Retry,
    SnsDestination,
    WebhookDestination,
)
from service.forwarders.metrics import DELIVERIES, init_delivery_metrics, set_backlog
from service.forwarders.outbox import DEFAULT_LEASE, Delivery, DeliveryOutbox
from service.store import StoreUnavailable

_log = structlog.get_logger(__name__)

_OUTBOX_ERRORS = (SQLAlchemyError, OSError, StoreUnavailable)


class Sender(Protocol):
    """Makes one delivery attempt; raises DeliveryError when it fails."""

    async def send(self, delivery: Delivery) -> None: ...

    async def close(self) -> None: ...


def build_sender(destination: WebhookDestination | SnsDestination) -> Sender:
    """The sender for a configured destination."""
    if isinstance(destination, SnsDestination):
        from service.forwarders.sns import SnsSender

        return SnsSender(destination)
    from service.forwarders.webhook_sender import WebhookSender

    return WebhookSender(destination)


class Dispatcher:
    """Sends outbox deliveries until `close`; `wake` after inserting new rows.

    `senders` replaces the built ones per destination name (for tests).
    """

    def __init__(
        self,
        outbox: DeliveryOutbox,
        destinations: Sequence[WebhookDestination | SnsDestination],
        *,
        senders: Mapping[str, Sender] | None = None,
        poll_interval: float = 1.0,
        batch_size: int = 20,
        lease: timedelta = DEFAULT_LEASE,
        backlog_interval: float = 15.0,
        rng: random.Random | None = None,
    ) -> None:
        self._outbox = outbox
        self._destinations = list(destinations)
        given = dict(senders or {})
        self._senders = {
            d.name: given.get(d.name) or build_sender(d) for d in self._destinations
        }
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._lease = lease
        self._backlog_interval = backlog_interval
        self._rng = rng or random.Random()
        self._wakeups = {d.name: asyncio.Event() for d in self._destinations}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        init_delivery_metrics(d.name for d in self._destinations)

    def wake(self) -> None:
        """New deliveries are in the outbox: look now instead of at the next poll."""
        for event in self._wakeups.values():
            event.set()

    async def run(self) -> None:
        """Deliver until `close`; then close the senders."""
        self._task = asyncio.current_task()
        try:
            if self._stopping.is_set():
                return
            async with asyncio.TaskGroup() as group:
                for destination in self._destinations:
                    group.create_task(self._dispatch(destination))
                group.create_task(self._watch_backlog())
        finally:
            for sender in self._senders.values():
                await sender.close()

    async def close(self, grace: float = 10.0) -> None:
        """Stop after the attempts in flight; cancel them after `grace` seconds."""
        self._stopping.set()
        for event in self._wakeups.values():
            event.set()
        task = self._task
        if task is None or task.done():
            return
        done, _ = await asyncio.wait([task], timeout=grace)
        if not done:
            _log.warning("delivery.drain_timeout", grace=grace)
            task.cancel()
            await asyncio.wait([task])

    def _claim_size(
        self, destination: WebhookDestination | SnsDestination
    ) -> tuple[int, timedelta]:
        """How many deliveries to claim at once, and for how long.

        The lease must outlast every attempt it covers: a lapsed claim lets another
        replica send deliveries still in flight here (twice, and out of order).
        """
        attempt = timedelta(seconds=2 * destination.timeout_seconds + 1)
        lease = max(self._lease, attempt)
        return max(1, min(self._batch_size, lease // attempt)), lease

    async def _dispatch(self, destination: WebhookDestination | SnsDestination) -> None:
        limit, lease = self._claim_size(destination)
        while not self._stopping.is_set():
            try:
                batch = await self._outbox.claim_due(
                    destination.name, datetime.now(UTC), limit, lease=lease
                )
                if batch:
                    await self._deliver_batch(destination, batch)
                    continue
            except _OUTBOX_ERRORS as exc:
                # Claims lapse by themselves; the rows are tried again later.
                _log.warning(
                    "delivery.outbox_unavailable",
                    destination=destination.name,
                    error=str(exc),
                )
            await self._idle(destination.name)

    async def _deliver_batch(
        self,
        destination: WebhookDestination | SnsDestination,
        batch: list[Delivery],
    ) -> None:
        unattempted = [delivery.id for delivery in batch]
        try:
            for delivery in batch:
                if self._stopping.is_set():
                    break
                passed = await self._attempt(destination, delivery)
                unattempted.remove(delivery.id)
                if not passed:
                    # The head waits for its retry; later ones must not overtake it.
                    break
        finally:
            if unattempted:
                await self._outbox.release(unattempted)

    async def _attempt(
        self,
        destination: WebhookDestination | SnsDestination,
        delivery: Delivery,
    ) -> bool:
        """One attempt; True when the destination may move on to the next delivery."""
        log = _log.bind(
            destination=destination.name,
            delivery_id=delivery.id,
            alert_id=delivery.alert_id,
            attempt=delivery.attempts + 1,
        )
        try:
            await self._senders[destination.name].send(delivery)
        except DeliveryError as exc:
            return await self._attempt_failed(destination, delivery, exc, log)
        except Exception as exc:
            # A sender bug must not stop the other destinations.
            log.exception("delivery.sender_error")
            error = DeliveryError(f"sender error: {type(exc).__name__}", retriable=True)
            return await self._attempt_failed(destination, delivery, error, log)

        await self._outbox.mark_delivered(delivery.id)
        DELIVERIES.labels(destination.type, "delivered").inc()
        log.info("delivery.delivered")
        return True

    async def _attempt_failed(
        self,
        destination: WebhookDestination | SnsDestination,
        delivery: Delivery,
        exc: DeliveryError,
        log: structlog.typing.FilteringBoundLogger,
    ) -> bool:
        attempts = delivery.attempts + 1
        if exc.retriable and attempts < destination.retry.max_attempts:
            wait = backoff_seconds(
                destination.retry, attempts, exc.retry_after, self._rng
            )
            next_attempt_at = datetime.now(UTC) + timedelta(seconds=wait)
            await self._outbox.mark_retry(delivery.id, str(exc), next_attempt_at)
            DELIVERIES.labels(destination.type, "retried").inc()
            log.warning(
                "delivery.retrying",
                wait_seconds=round(wait, 3),
                status=exc.status,
                error=str(exc),
            )
            return False

        await self._outbox.mark_failed(delivery.id, str(exc))
        DELIVERIES.labels(destination.type, "failed").inc()
        log.error("delivery.failed", status=exc.status, error=str(exc))
        return True

    async def _idle(self, name: str) -> None:
        event = self._wakeups[name]
        try:
            async with asyncio.timeout(self._poll_interval):
                await event.wait()
        except TimeoutError:
            pass
        if not self._stopping.is_set():
            event.clear()

    async def _watch_backlog(self) -> None:
        names = [destination.name for destination in self._destinations]
        while not self._stopping.is_set():
            try:
                set_backlog(names, await self._outbox.backlog())
            except _OUTBOX_ERRORS as exc:
                _log.warning("delivery.backlog_unavailable", error=str(exc))
            try:
                async with asyncio.timeout(self._backlog_interval):
                    await self._stopping.wait()
            except TimeoutError:
                pass


def backoff_seconds(
    retry: Retry, attempts: int, retry_after: float | None, rng: random.Random
) -> float:
    """The wait before attempt `attempts + 1`: Retry-After if given, else jittered.

    Exponential from `initial_backoff_seconds`, capped, with "equal jitter":
    between half and all of the step, so replicas spread out but never rush.
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), retry.max_retry_after_seconds)
    step = retry.initial_backoff_seconds * 2 ** min(attempts - 1, 30)
    ceiling = min(retry.max_backoff_seconds, step)
    return rng.uniform(ceiling / 2, ceiling)
