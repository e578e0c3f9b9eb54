"""Webhook forwarder: POSTs each new alert as signed JSON to every configured URL.

Bodies are signed with HMAC-SHA256 over `f"{timestamp}.{body}"`; receivers check
them with `verify_signature`. Retries back off with jitter and honour Retry-After.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import orjson
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from service.errors import DeliveryError
from service.metrics import WEBHOOK_DELIVERIES

if TYPE_CHECKING:
    from service.alerts import Alert

_log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Trailwarden-Signature"
TIMESTAMP_HEADER = "X-Trailwarden-Timestamp"
DELIVERY_HEADER = "X-Trailwarden-Delivery"
# 408 and 425 are "try again" by definition; 429 and 5xx are the receiver's load.
_RETRIABLE_STATUSES = frozenset({408, 425, 429})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp`."""
    message = timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """True when `signature` is the one `sign` makes; compared in constant time."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class _Delivery:
    alert_id: str
    body: bytes
    delivery_id: str


class _Target:
    """One receiver URL with its own queue, so a slow one holds back no other."""

    def __init__(self, url: str, queue_size: int) -> None:
        self.url = url
        parts = urlsplit(url)
        # Logged instead of the URL: webhook paths often carry a token.
        self.origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
        self.queue: asyncio.Queue[_Delivery] = asyncio.Queue(maxsize=queue_size)


class WebhookForwarder:
    """Delivers alerts to webhook URLs from background tasks.

    `submit` never waits: when a URL's queue is full the alert is dropped for that
    URL and counted with outcome "dropped". `run` delivers until `close`.
    """

    def __init__(
        self,
        urls: Sequence[str],
        secret: str,
        *,
        timeout: float = 5.0,
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        queue_size: int = 1000,
    ) -> None:
        self._targets = [_Target(url, queue_size) for url in urls]
        self._secret = secret
        self._max_attempts = max_attempts
        self._backoff = wait_random_exponential(multiplier=backoff, max=max_backoff)
        self._max_retry_after = max_retry_after
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False
        )
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False

    def submit(self, alert: Alert) -> None:
        """Queue `alert` for every URL; drop it for a URL whose queue is full."""
        if self._closed:
            WEBHOOK_DELIVERIES.labels("dropped").inc(len(self._targets))
            return

        body = orjson.dumps(alert.model_dump(mode="json"))
        for target in self._targets:
            delivery = _Delivery(alert.id, body, str(uuid.uuid4()))
            try:
                target.queue.put_nowait(delivery)
            except asyncio.QueueFull:
                WEBHOOK_DELIVERIES.labels("dropped").inc()
                _log.error("webhook.dropped", alert_id=alert.id, target=target.origin)

    async def run(self) -> None:
        """Deliver queued alerts until `close` is called."""
        try:
            if self._closed:
                return
            async with asyncio.TaskGroup() as group:
                self._workers = [
                    group.create_task(self._deliver_queue(target))
                    for target in self._targets
                ]
        finally:
            await self._client.aclose()

    async def close(self, grace: float) -> None:
        """Stop taking alerts, give queued ones `grace` seconds, then stop `run`."""
        self._closed = True
        try:
            async with asyncio.timeout(grace):
                for target in self._targets:
                    await target.queue.join()
        except TimeoutError:
            pending = sum(target.queue.qsize() for target in self._targets)
            _log.warning("webhook.drain_timeout", pending=pending, grace=grace)
        for worker in self._workers:
            worker.cancel()
        for target in self._targets:
            left = target.queue.qsize()
            if left:
                WEBHOOK_DELIVERIES.labels("dropped").inc(left)

    async def _deliver_queue(self, target: _Target) -> None:
        while True:
            delivery = await target.queue.get()
            try:
                await self._deliver(target, delivery)
            except asyncio.CancelledError:
                WEBHOOK_DELIVERIES.labels("dropped").inc()
                raise
            finally:
                target.queue.task_done()

    async def _deliver(self, target: _Target, delivery: _Delivery) -> None:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait,
            retry=retry_if_exception(
                lambda exc: isinstance(exc, DeliveryError) and exc.retriable
            ),
            before_sleep=lambda state: self._on_retry(target, delivery, state),
            reraise=True,
        )
        try:
            await retrying(self._post, target, delivery)
        except DeliveryError as exc:
            WEBHOOK_DELIVERIES.labels("failed").inc()
            _log.error(
                "webhook.failed",
                alert_id=delivery.alert_id,
                delivery_id=delivery.delivery_id,
                target=target.origin,
                status=exc.status,
                error=str(exc),
            )
            return

        WEBHOOK_DELIVERIES.labels("delivered").inc()
        _log.debug(
            "webhook.delivered",
            alert_id=delivery.alert_id,
            delivery_id=delivery.delivery_id,
            target=target.origin,
        )

    async def _post(self, target: _Target, delivery: _Delivery) -> None:
        # A fresh timestamp per attempt keeps retries inside receivers' replay window.
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, delivery.body),
            DELIVERY_HEADER: delivery.delivery_id,
        }
        try:
            response = await self._client.post(
                target.url, content=delivery.body, headers=headers
            )
        except httpx.TransportError as exc:
            raise DeliveryError(
                f"{target.origin}: {type(exc).__name__}", retriable=True
            ) from exc

        _raise_for_status(target, response)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, DeliveryError) and exc.retry_after is not None:
            return min(exc.retry_after, self._max_retry_after)
        return self._backoff(state)

    def _on_retry(
        self, target: _Target, delivery: _Delivery, state: RetryCallState
    ) -> None:
        WEBHOOK_DELIVERIES.labels("retried").inc()
        exc = state.outcome.exception() if state.outcome is not None else None
        _log.warning(
            "webhook.retrying",
            alert_id=delivery.alert_id,
            delivery_id=delivery.delivery_id,
            target=target.origin,
            attempt=state.attempt_number,
            wait_seconds=round(state.upcoming_sleep, 3),
            error=str(exc),
        )


def _raise_for_status(target: _Target, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return

    retriable = status in _RETRIABLE_STATUSES or status >= 500
    retry_after = None
    if status in (429, 503):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
    raise DeliveryError(
        f"{target.origin} answered HTTP {status}",
        retriable=retriable,
        status=status,
        retry_after=retry_after,
    )
