"""Builds the service's parts and runs them in one TaskGroup until a signal.

SIGTERM or SIGINT only sets a stop event; the consumer then stores and commits the
batch in hand, leaves the group, and the API and forwarder stop after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import structlog
import uvicorn
from fastapi import FastAPI

from detectors.engine import DetectionEngine
from detectors.third_parties import Policy, empty_policy, load_policy
from service.api import create_app
from service.consumer import CloudTrailConsumer
from service.errors import ServiceError, ShutdownTimeout
from service.forwarders.webhook import WebhookForwarder
from service.metrics import init_metrics
from service.settings import Settings
from service.store import AlertStore, open_store

_log = structlog.get_logger(__name__)

_FORWARDER_GRACE_SECONDS = 5.0
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_service(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """`trailwarden run`: consume, detect, store, serve the API, forward alerts.

    Runs until SIGTERM or SIGINT (or until `stop` is set, for embedding and
    tests), then returns after a clean shutdown. Raises PolicyError for a bad
    policy file, ServiceError when a part fails, and ShutdownTimeout when after a
    signal the batch in hand is not stored within `shutdown_timeout_seconds`.
    """
    _log.info("service.starting", **settings.describe())
    policy = (
        load_policy(settings.policy_file) if settings.policy_file else empty_policy()
    )
    init_metrics(DetectionEngine(policy).detector_ids)
    dedup_window = timedelta(seconds=settings.dedup_window_seconds)
    store = open_store(settings.database_url, dedup_window=dedup_window)
    await store.start()
    try:
        await _run_parts(settings, store, policy, stop or asyncio.Event())
    finally:
        await store.close()
    _log.info("service.stopped")


async def serve_api(store: AlertStore, settings: Settings, stop: asyncio.Event) -> None:
    """Serve the API over `store` until `stop` is set (or SIGTERM/SIGINT sets it).

    The caller owns the store's start and close.
    """
    app = create_app(store, api_tokens=settings.token_values())
    server = _ApiServer(app, settings)
    with _stop_on_signals(_Shutdown(stop, settings.shutdown_timeout_seconds)):
        async with _failing_part(), asyncio.TaskGroup() as group:
            group.create_task(server.serve_checked())
            await stop.wait()
            server.should_exit = True


async def _run_parts(
    settings: Settings, store: AlertStore, policy: Policy, stop: asyncio.Event
) -> None:
    shutdown = _Shutdown(stop, settings.shutdown_timeout_seconds)
    forwarder = _webhook_forwarder(settings)
    consumer = CloudTrailConsumer(settings, store, policy, forwarder)
    app = create_app(
        store,
        api_tokens=settings.token_values(),
        not_ready=consumer.not_ready_reason,
    )
    server = _ApiServer(app, settings)

    with _stop_on_signals(shutdown):
        async with _failing_part(), asyncio.TaskGroup() as group:
            group.create_task(server.serve_checked())
            if forwarder is not None:
                group.create_task(forwarder.run())
            try:
                await shutdown.consume(consumer)
            finally:
                # Reverse order: the consumer has committed; now the API, then the
                # webhooks get a short while to deliver what is queued.
                server.should_exit = True
                if forwarder is not None:
                    await forwarder.close(_FORWARDER_GRACE_SECONDS)


def _webhook_forwarder(settings: Settings) -> WebhookForwarder | None:
    if not settings.webhook_urls or settings.webhook_secret is None:
        return None
    return WebhookForwarder(
        settings.webhook_urls,
        settings.webhook_secret.get_secret_value(),
        timeout=settings.webhook_timeout_seconds,
        max_attempts=settings.webhook_max_attempts,
    )


class _Shutdown:
    """The stop event, and the drain deadline that a stop request starts."""

    def __init__(self, stop: asyncio.Event, timeout: float) -> None:
        self.stop = stop
        self._timeout = timeout
        self._deadline: asyncio.Timeout | None = None

    def request(self, reason: str) -> None:
        loop = asyncio.get_running_loop()
        if self.stop.is_set():
            # A second signal: stop waiting for the batch in hand.
            _log.warning("service.stopping_now", signal=reason)
            self._reschedule(loop.time())
            return

        _log.info("service.stopping", signal=reason, deadline_seconds=self._timeout)
        self.stop.set()
        self._reschedule(loop.time() + self._timeout)

    async def consume(self, consumer: CloudTrailConsumer) -> None:
        try:
            async with asyncio.timeout(None) as deadline:
                self._deadline = deadline
                if self.stop.is_set():
                    self._reschedule(asyncio.get_running_loop().time() + self._timeout)
                await consumer.run(self.stop)
        except TimeoutError as exc:
            raise ShutdownTimeout(
                f"the batch in hand was not stored within {self._timeout}s of the "
                "stop request; its offsets are not committed"
            ) from exc
        finally:
            self._deadline = None

    def _reschedule(self, when: float) -> None:
        if self._deadline is not None:
            self._deadline.reschedule(when)


@contextlib.contextmanager
def _stop_on_signals(shutdown: _Shutdown) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, shutdown.request, sig.name)
    try:
        yield
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def _failing_part() -> AsyncIterator[None]:
    """Re-raise a TaskGroup's only error as itself, so callers catch one type."""
    try:
        yield
    except ExceptionGroup as group:
        errors = group.exceptions
        if len(errors) == 1:
            raise errors[0] from None
        raise ServiceError(f"{len(errors)} parts of the service failed") from group


class _ApiServer(uvicorn.Server):
    """uvicorn without its signal handlers: the runtime owns SIGTERM and SIGINT."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        config = uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        super().__init__(config)
        self._address = f"{settings.http_host}:{settings.http_port}"

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def serve_checked(self) -> None:
        try:
            await self.serve()
        except SystemExit as exc:
            # uvicorn exits the process when it cannot bind or start the app.
            raise ServiceError(
                f"HTTP server could not start on {self._address}"
            ) from exc
        _log.info("api.stopped", address=self._address)
