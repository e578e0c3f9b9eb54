"""WebhookForwarder against a real HTTP receiver: signing, retries, drops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from service.alerts import Alert
from service.forwarders.webhook import (
    WebhookForwarder,
    parse_retry_after,
    sign,
    verify_signature,
)

FAST: dict[str, Any] = {"backoff": 0.001, "max_backoff": 0.002}


def make_alert(alert_id: str = "a-1") -> Alert:
    seen = datetime(2024, 3, 5, 14, 0, tzinfo=UTC)
    return Alert(
        id=alert_id,
        detector="unregistered-external-account",
        severity="high",
        title="Unregistered account 999988887777 assumed a role",
        third_party=None,
        account_id="111122223333",
        actor="arn:aws:iam::999988887777:root",
        source_ip="198.51.100.7",
        region="us-east-1",
        action="sts:AssumeRole",
        event_time=seen,
        first_seen=seen,
        last_seen=seen,
        count=1,
        event_ids=["e-1"],
        status="open",
        details={},
    )


def deliveries(outcome: str) -> float:
    labels = {"outcome": outcome}
    value = REGISTRY.get_sample_value("trailwarden_webhook_deliveries_total", labels)
    return value or 0.0


@contextlib.asynccontextmanager
async def running(forwarder: WebhookForwarder) -> AsyncIterator[WebhookForwarder]:
    task = asyncio.create_task(forwarder.run())
    try:
        yield forwarder
    finally:
        await forwarder.close(2.0)
        await task


def test_verify_signature_signed_body_true() -> None:
    signature = sign("k", "1700000000", b'{"id":"a"}')

    assert signature.startswith("sha256=")
    assert verify_signature("k", "1700000000", b'{"id":"a"}', signature)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body"),
    [
        ("other", "1700000000", b'{"id":"a"}'),
        ("k", "1700000001", b'{"id":"a"}'),
        ("k", "1700000000", b'{"id":"b"}'),
    ],
)
def test_verify_signature_any_part_changed_false(
    secret: str, timestamp: str, body: bytes
) -> None:
    signature = sign("k", "1700000000", b'{"id":"a"}')

    assert not verify_signature(secret, timestamp, body, signature)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("Tue, 05 Mar 2024 14:00:30 GMT", 30.0),
        ("Tue, 05 Mar 2024 13:59:00 GMT", 0.0),
        ("soon", None),
        (None, None),
    ],
)
def test_parse_retry_after_forms_seconds(
    header: str | None, expected: float | None
) -> None:
    now = datetime(2024, 3, 5, 14, 0, tzinfo=UTC)

    assert parse_retry_after(header, now) == expected


async def test_webhook_new_alert_delivered_signed(
    webhook_receiver: Any, wait_until: Callable[..., Awaitable[Any]]
) -> None:
    alert = make_alert()
    delivered = deliveries("delivered")
    forwarder = WebhookForwarder([webhook_receiver.url], webhook_receiver.secret)

    async with running(forwarder):
        forwarder.submit(alert)
        received = await wait_until(webhook_receiver.snapshot, 10)

    (hook,) = received
    assert hook.signature_valid
    assert orjson.loads(hook.body) == alert.model_dump(mode="json")
    assert hook.headers["content-type"] == "application/json"
    assert hook.headers["x-trailwarden-delivery"]
    assert deliveries("delivered") == delivered + 1


async def test_webhook_every_url_gets_alert(
    webhook_receiver: Any, wait_until: Callable[..., Awaitable[Any]]
) -> None:
    urls = [f"{webhook_receiver.url}?to=a", f"{webhook_receiver.url}?to=b"]
    forwarder = WebhookForwarder(urls, webhook_receiver.secret)

    async with running(forwarder):
        forwarder.submit(make_alert())
        await wait_until(lambda: len(webhook_receiver.snapshot()) == 2, 10)

    ids = {hook.headers["x-trailwarden-delivery"] for hook in webhook_receiver.received}
    assert len(ids) == 2


async def test_webhook_server_errors_retried_then_delivered(
    webhook_receiver: Any, wait_until: Callable[..., Awaitable[Any]]
) -> None:
    webhook_receiver.responses.extend([(503, {}), (500, {})])
    retried, delivered = deliveries("retried"), deliveries("delivered")
    forwarder = WebhookForwarder(
        [webhook_receiver.url], webhook_receiver.secret, **FAST
    )

    async with running(forwarder):
        forwarder.submit(make_alert())
        await wait_until(lambda: deliveries("delivered") == delivered + 1, 10)

    hooks = webhook_receiver.snapshot()
    assert len(hooks) == 3
    assert len({hook.headers["x-trailwarden-delivery"] for hook in hooks}) == 1
    assert all(hook.signature_valid for hook in hooks)
    assert deliveries("retried") == retried + 2


async def test_webhook_client_error_not_retried(
    webhook_receiver: Any, wait_until: Callable[..., Awaitable[Any]]
) -> None:
    webhook_receiver.responses.append((400, {}))
    failed = deliveries("failed")
    forwarder = WebhookForwarder(
        [webhook_receiver.url], webhook_receiver.secret, **FAST
    )

    async with running(forwarder):
        forwarder.submit(make_alert())
        await wait_until(lambda: deliveries("failed") == failed + 1, 10)

    assert len(webhook_receiver.snapshot()) == 1


async def test_webhook_retry_after_honoured(
    webhook_receiver: Any, wait_until: Callable[..., Awaitable[Any]]
) -> None:
    """A 429's Retry-After sets the wait, not the (tiny) exponential backoff."""
    webhook_receiver.responses.append((429, {"Retry-After": "1"}))
    delivered = deliveries("delivered")
    forwarder = WebhookForwarder(
        [webhook_receiver.url], webhook_receiver.secret, **FAST
    )

    with capture_logs() as logs:
        async with running(forwarder):
            forwarder.submit(make_alert())
            await wait_until(lambda: deliveries("delivered") == delivered + 1, 10)

    (retry,) = [log for log in logs if log["event"] == "webhook.retrying"]
    assert retry["wait_seconds"] == 1.0
    assert len(webhook_receiver.snapshot()) == 2


async def test_webhook_unreachable_fails_after_max_attempts(
    wait_until: Callable[..., Awaitable[Any]], free_port: Callable[[], int]
) -> None:
    failed, retried = deliveries("failed"), deliveries("retried")
    url = f"http://127.0.0.1:{free_port()}/hook"
    forwarder = WebhookForwarder([url], "secret", max_attempts=3, **FAST)

    with capture_logs() as logs:
        async with running(forwarder):
            forwarder.submit(make_alert())
            await wait_until(lambda: deliveries("failed") == failed + 1, 10)

    assert deliveries("retried") == retried + 2
    (failure,) = [log for log in logs if log["event"] == "webhook.failed"]
    assert failure["alert_id"] == "a-1"
    assert failure["log_level"] == "error"


async def test_webhook_queue_full_dropped_without_waiting() -> None:
    dropped = deliveries("dropped")
    forwarder = WebhookForwarder(["http://127.0.0.1:9/hook"], "secret", queue_size=1)

    forwarder.submit(make_alert("a-1"))
    forwarder.submit(make_alert("a-2"))

    assert deliveries("dropped") == dropped + 1
    await forwarder.close(0.01)
    await forwarder.run()


async def test_webhook_close_undelivered_counted_dropped() -> None:
    forwarder = WebhookForwarder(["http://127.0.0.1:9/hook"], "secret")
    forwarder.submit(make_alert("a-1"))
    forwarder.submit(make_alert("a-2"))
    dropped = deliveries("dropped")

    await forwarder.close(0.01)
    forwarder.submit(make_alert("a-3"))
    await forwarder.run()

    assert deliveries("dropped") == dropped + 3
