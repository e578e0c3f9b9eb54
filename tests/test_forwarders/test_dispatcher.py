"""Dispatcher over the in-memory outbox: order per destination, retries, exhaustion."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from service.alerts import AlertChange
from service.errors import DeliveryError
from service.forwarders.destinations import Retry, WebhookDestination
from service.forwarders.dispatcher import Dispatcher, backoff_seconds
from service.forwarders.outbox import Delivery, MemoryOutbox, outbox_rows

FAST = Retry(max_attempts=3, initial_backoff_seconds=0.01, max_backoff_seconds=0.02)


def _destination(name: str, retry: Retry = FAST) -> WebhookDestination:
    return WebhookDestination(
        name=name, type="webhook", url="http://127.0.0.1:9/", secret="k", retry=retry
    )


class ScriptedSender:
    """Fails with the queued errors, then succeeds; records every attempt."""

    def __init__(self, errors: list[DeliveryError] | None = None) -> None:
        self.errors = list(errors or [])
        self.attempts: list[str] = []
        self.delivered: list[str] = []

    async def send(self, delivery: Delivery) -> None:
        self.attempts.append(delivery.alert_id)
        if self.errors:
            raise self.errors.pop(0)
        self.delivered.append(delivery.alert_id)

    async def close(self) -> None:
        return None


@pytest.fixture
async def run_dispatcher() -> AsyncIterator[Callable[..., Dispatcher]]:
    tasks: list[tuple[Dispatcher, asyncio.Task[None]]] = []

    def start(outbox: MemoryOutbox, destinations, senders) -> Dispatcher:
        dispatcher = Dispatcher(
            outbox, destinations, senders=senders, poll_interval=0.01
        )
        tasks.append((dispatcher, asyncio.create_task(dispatcher.run())))
        return dispatcher

    yield start
    for dispatcher, task in tasks:
        await dispatcher.close(grace=5)
        await task


async def test_dispatcher_failing_head_blocks_later_until_it_succeeds(
    make_alert, run_dispatcher, wait_until
) -> None:
    outbox = MemoryOutbox()
    hook = _destination("hook")
    changes = [AlertChange(make_alert(n), created=True) for n in range(4)]
    await outbox.add(outbox_rows(changes, [hook]))
    sender = ScriptedSender([DeliveryError("503", retriable=True)] * 2)

    run_dispatcher(outbox, [hook], {"hook": sender})
    await wait_until(lambda: len(sender.delivered) == 4, 10)

    names = ["alert-0000", "alert-0001", "alert-0002", "alert-0003"]
    assert sender.attempts == [names[0], names[0], *names]
    assert sender.delivered == names


async def test_dispatcher_exhausted_head_fails_and_next_goes(
    make_alert, run_dispatcher, wait_until
) -> None:
    outbox = MemoryOutbox()
    hook = _destination("hook")
    changes = [AlertChange(make_alert(n), created=True) for n in range(2)]
    await outbox.add(outbox_rows(changes, [hook]))
    sender = ScriptedSender([DeliveryError("500", retriable=True)] * 3)

    run_dispatcher(outbox, [hook], {"hook": sender})
    await wait_until(lambda: sender.delivered == ["alert-0001"], 10)

    page = await outbox.list("failed", 10, None)
    assert [d.alert_id for d in page.items] == ["alert-0000"]
    assert page.items[0].attempts == 3
    assert page.items[0].last_error == "500"


async def test_dispatcher_not_retriable_fails_at_once(
    make_alert, run_dispatcher, wait_until
) -> None:
    outbox = MemoryOutbox()
    hook = _destination("hook")
    await outbox.add(outbox_rows([AlertChange(make_alert(0), created=True)], [hook]))
    sender = ScriptedSender([DeliveryError("HTTP 404", retriable=False, status=404)])

    with capture_logs() as logs:
        run_dispatcher(outbox, [hook], {"hook": sender})
        await wait_until(lambda: sender.attempts, 10)
        await wait_until(lambda: any(e["event"] == "delivery.failed" for e in logs), 10)

    (failed,) = (await outbox.list("failed", 10, None)).items
    assert failed.attempts == 1


async def test_dispatcher_slow_destination_does_not_hold_another(
    make_alert, run_dispatcher, wait_until
) -> None:
    outbox = MemoryOutbox()
    slow = _destination("slow", Retry(max_attempts=5, initial_backoff_seconds=60))
    fast = _destination("fast")
    changes = [AlertChange(make_alert(n), created=True) for n in range(3)]
    await outbox.add(outbox_rows(changes, [slow, fast]))
    slow_sender = ScriptedSender([DeliveryError("503", retriable=True)])
    fast_sender = ScriptedSender()

    run_dispatcher(outbox, [slow, fast], {"slow": slow_sender, "fast": fast_sender})
    await wait_until(lambda: len(fast_sender.delivered) == 3, 10)

    assert slow_sender.delivered == []
    backlog = await outbox.backlog()
    assert backlog[("slow", "pending")] == 3


def test_backoff_seconds_retry_after_wins_and_is_capped() -> None:
    retry = Retry(
        initial_backoff_seconds=1, max_backoff_seconds=8, max_retry_after_seconds=30
    )
    rng = random.Random(7)

    assert backoff_seconds(retry, 1, 12.0, rng) == 12.0
    assert backoff_seconds(retry, 1, 3600.0, rng) == 30.0
    assert 0.5 <= backoff_seconds(retry, 1, None, rng) <= 1.0
    assert 4.0 <= backoff_seconds(retry, 10, None, rng) <= 8.0


async def test_memory_outbox_claim_waits_for_due_head(make_alert) -> None:
    outbox = MemoryOutbox()
    hook = _destination("hook")
    changes = [AlertChange(make_alert(n), created=True) for n in range(3)]
    await outbox.add(outbox_rows(changes, [hook]))
    now = datetime.now(UTC)
    head, *_ = await outbox.claim_due("hook", now, 10)

    await outbox.mark_retry(head.id, "503", now + timedelta(minutes=5))

    assert await outbox.claim_due("hook", now, 10) == []
    later = await outbox.claim_due("hook", now + timedelta(minutes=6), 10)
    assert [d.alert_id for d in later] == ["alert-0000", "alert-0001", "alert-0002"]


class RecordingOutbox(MemoryOutbox):
    """Remembers the size and lease of every claim."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[tuple[int, timedelta]] = []

    async def claim_due(
        self, destination: str, now: datetime, limit: int, *, lease: timedelta
    ) -> list[Delivery]:
        self.claims.append((limit, lease))
        return await super().claim_due(destination, now, limit, lease=lease)


@pytest.mark.parametrize(
    ("attempt_timeout", "size", "lease"),
    [(5.0, 5, 60.0), (20.0, 1, 60.0), (45.0, 1, 91.0)],
)
async def test_dispatcher_claims_only_what_its_lease_covers(
    make_alert, run_dispatcher, wait_until, attempt_timeout, size, lease
) -> None:
    """A claim never holds more attempts than fit in its lease."""
    outbox = RecordingOutbox()
    hook = WebhookDestination(
        name="hook",
        type="webhook",
        url="http://127.0.0.1:9/",
        secret="k",
        timeout_seconds=attempt_timeout,
    )
    changes = [AlertChange(make_alert(n), created=True) for n in range(30)]
    await outbox.add(outbox_rows(changes, [hook]))
    sender = ScriptedSender()

    run_dispatcher(outbox, [hook], {"hook": sender})
    await wait_until(lambda: len(sender.delivered) == 30, 10)

    assert outbox.claims[0] == (size, timedelta(seconds=lease))
