"""Builds the service's parts and runs them in one TaskGroup until a signal.

SIGTERM or SIGINT only sets a stop event; the consumer then stores and commits the
batch in hand, leaves the group, and the API and the delivery dispatcher stop after
it. Deliveries not yet sent stay in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from datetime import timedelta

import structlog

from detectors.engine import DetectionEngine
from detectors.third_parties import Policy, empty_policy, load_policy
from service.api import create_app
from service.api import deliveries as deliveries_api
from service.consumer import CloudTrailConsumer
from service.errors import ShutdownTimeout, one_failure
from service.forwarders.destinations import (
    DestinationsError,
    SnsDestination,
    WebhookDestination,
    load_destinations,
)
from service.forwarders.dispatcher import Dispatcher
from service.forwarders.metrics import init_delivery_metrics
from service.forwarders.outbox_sql import SqlDeliveryOutbox, open_outbox, outbox_hook
from service.http_server import HttpServer
from service.metrics import init_metrics
from service.settings import Settings
from service.store import AlertStore, open_store

_log = structlog.get_logger(__name__)

_DISPATCHER_GRACE_SECONDS = 5.0
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_service(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """`trailwarden run`: consume, detect, store, serve the API, forward alerts.

    Runs until SIGTERM or SIGINT (or until `stop` is set, for embedding and
    tests), then returns after a clean shutdown. Raises PolicyError for a bad
    policy file, DestinationsError for a bad destinations file, ServiceError when
    a part fails, and ShutdownTimeout when after a signal the batch in hand is not
    stored within `shutdown_timeout_seconds`.
    """
    _log.info("service.starting", **settings.describe())
    policy = (
        load_policy(settings.policy_file) if settings.policy_file else empty_policy()
    )
    destinations = configured_destinations(settings)
    init_metrics(DetectionEngine(policy).detector_ids)
    init_delivery_metrics(destination.name for destination in destinations)
    dedup_window = timedelta(seconds=settings.dedup_window_seconds)
    hook = outbox_hook(destinations) if destinations else None
    store = open_store(settings.database_url, dedup_window=dedup_window, outbox=hook)
    await store.start()
    outbox = open_outbox(settings.database_url)
    try:
        await _run_parts(settings, store, outbox, policy, destinations, stop)
    finally:
        await outbox.close()
        await store.close()
    _log.info("service.stopped")


def configured_destinations(
    settings: Settings,
) -> list[WebhookDestination | SnsDestination]:
    """The destinations file's entries, plus one per `webhook_urls` entry.

    Those are named webhook-1, webhook-2, ...; raises DestinationsError when the
    file already uses one of these names (they would share one outbox queue).
    """
    destinations = (
        load_destinations(settings.destinations_file)
        if settings.destinations_file
        else []
    )
    taken = {destination.name for destination in destinations}
    for index, url in enumerate(settings.webhook_urls):
        name = f"webhook-{index + 1}"
        if name in taken:
            raise DestinationsError(
                f"{settings.destinations_file}: destination name {name!r} is "
                "reserved for TRAILWARDEN_WEBHOOK_URLS; rename it"
            )
        destinations.append(
            WebhookDestination(
                type="webhook",
                name=name,
                url=url,
                secret=settings.webhook_secret,
                timeout_seconds=settings.webhook_timeout_seconds,
                retry={"max_attempts": settings.webhook_max_attempts},
            )
        )
    return destinations


async def serve_api(store: AlertStore, settings: Settings, stop: asyncio.Event) -> None:
    """Serve the API over `store` until `stop` is set (or SIGTERM/SIGINT sets it).

    The caller owns the store's start and close.
    """
    app = create_app(store, api_tokens=settings.token_values())
    server = HttpServer(app, settings.http_host, settings.http_port, name="API server")
    with _stop_on_signals(_Shutdown(stop, settings.shutdown_timeout_seconds)):
        async with one_failure("the service"), asyncio.TaskGroup() as group:
            group.create_task(server.serve_checked())
            await stop.wait()
            server.should_exit = True


async def _run_parts(
    settings: Settings,
    store: AlertStore,
    outbox: SqlDeliveryOutbox,
    policy: Policy,
    destinations: list[WebhookDestination | SnsDestination],
    stop: asyncio.Event | None,
) -> None:
    shutdown = _Shutdown(stop or asyncio.Event(), settings.shutdown_timeout_seconds)
    dispatcher = Dispatcher(outbox, destinations) if destinations else None
    consumer = CloudTrailConsumer(settings, store, policy, dispatcher)
    app = create_app(
        store,
        api_tokens=settings.token_values(),
        not_ready=consumer.not_ready_reason,
    )
    deliveries_api.install(app, outbox)
    server = HttpServer(app, settings.http_host, settings.http_port, name="API server")

    with _stop_on_signals(shutdown):
        async with one_failure("the service"), asyncio.TaskGroup() as group:
            group.create_task(server.serve_checked())
            if dispatcher is not None:
                group.create_task(dispatcher.run())
            try:
                await shutdown.consume(consumer)
            finally:
                # Reverse order: the consumer has committed; now the API, then the
                # dispatcher gets a short while to send what is due.
                server.should_exit = True
                if dispatcher is not None:
                    await dispatcher.close(_DISPATCHER_GRACE_SECONDS)


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
