"""Run the bridge's parts until a signal: SQS loop, backfill, EventBridge endpoint.

SIGTERM or SIGINT sets a stop event: polling stops, the messages in hand are
finished, and the process exits 0; past the drain deadline it gives up with 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.api.health import metrics_route
from service.bridge.aws import aws_client
from service.bridge.backfill import (
    BackfillRange,
    BackfillState,
    BackfillSummary,
    run_backfill,
)
from service.bridge.eventbridge import create_eventbridge_app
from service.bridge.metrics import init_bridge_metrics
from service.bridge.producer import RecordProducer
from service.bridge.settings import BridgeSettings
from service.bridge.sqs import SqsBridge
from service.bridge.transfer import FileOutcome
from service.errors import ServiceError, one_failure
from service.http_server import HttpServer

__all__ = ["run_backfill_command", "run_eventbridge", "run_sqs_bridge"]

_log = structlog.get_logger(__name__)
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_sqs_bridge(
    settings: BridgeSettings, queue_url: str, stop: asyncio.Event | None = None
) -> None:
    """Bridge the queue's notifications until a signal (or `stop`), serving /metrics.

    Raises ServiceError when Kafka, the queue or the metrics port fails.
    """
    stop = stop or asyncio.Event()
    init_bridge_metrics()
    _log.info("bridge.starting", mode="sqs", **settings.describe())
    sqs, s3 = aws_client("sqs", settings), aws_client("s3", settings)
    async with _producer(settings) as producer:
        bridge = SqsBridge(settings, queue_url, sqs=sqs, s3=s3, producer=producer)
        async with one_failure("the bridge"), asyncio.TaskGroup() as group:
            server = None
            if settings.bridge_metrics_port:
                server = HttpServer(
                    _metrics_app(),
                    settings.bridge_http_host,
                    settings.bridge_metrics_port,
                    name="bridge metrics server",
                )
                group.create_task(server.serve_checked())
            try:
                async with _drain_on_signals(stop, settings.shutdown_timeout_seconds):
                    await bridge.run(stop)
            finally:
                if server is not None:
                    server.should_exit = True
    _log.info("bridge.stopped")


async def run_backfill_command(
    settings: BridgeSettings,
    span: BackfillRange,
    state_file: Path,
    *,
    on_start: Callable[[int], None] = lambda _files: None,
    on_file_done: Callable[[str, FileOutcome], None] = lambda _key, _outcome: None,
) -> BackfillSummary:
    """Replay the range into Kafka; a signal stops it after the files in hand."""
    stop = asyncio.Event()
    init_bridge_metrics()
    _log.info("bridge.starting", mode="backfill", state_file=str(state_file))
    state = BackfillState.load(state_file)
    s3 = aws_client("s3", settings)
    async with (
        _producer(settings) as producer,
        _drain_on_signals(stop, settings.shutdown_timeout_seconds),
    ):
        return await run_backfill(
            s3,
            producer,
            span,
            state,
            stop,
            on_start=on_start,
            on_file_done=on_file_done,
        )


async def run_eventbridge(
    settings: BridgeSettings, stop: asyncio.Event | None = None
) -> None:
    """Serve the EventBridge endpoint until a signal (or `stop`)."""
    if settings.bridge_secret is None:
        raise ServiceError("TRAILWARDEN_BRIDGE_SECRET is not set")
    stop = stop or asyncio.Event()
    init_bridge_metrics()
    _log.info("bridge.starting", mode="eventbridge", **settings.describe())
    ack_timeout = settings.bridge_http_produce_timeout_seconds
    async with _producer(settings, ack_timeout=ack_timeout) as producer:
        app = create_eventbridge_app(
            producer,
            secret=settings.bridge_secret.get_secret_value(),
            header=settings.bridge_secret_header,
        )
        server = HttpServer(
            app,
            settings.bridge_http_host,
            settings.bridge_http_port,
            name="EventBridge endpoint",
        )
        async with one_failure("the bridge"), asyncio.TaskGroup() as group:
            group.create_task(server.serve_checked())
            with _stop_on_signals(stop):
                await stop.wait()
            # uvicorn answers the requests in hand (their acks awaited) first.
            server.should_exit = True
    _log.info("bridge.stopped")


@contextlib.asynccontextmanager
async def _producer(
    settings: BridgeSettings, *, ack_timeout: float | None = None
) -> AsyncIterator[RecordProducer]:
    producer = RecordProducer(settings, timeout=ack_timeout)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def _drain_on_signals(
    stop: asyncio.Event, drain_seconds: float
) -> AsyncIterator[None]:
    """Set `stop` on a signal; cancel the work `drain_seconds` later."""
    loop = asyncio.get_running_loop()
    deadline = asyncio.timeout(None)

    def reschedule() -> None:
        deadline.reschedule(loop.time() + drain_seconds)

    try:
        async with deadline:
            with _stop_on_signals(stop, reschedule):
                yield
    except TimeoutError as exc:
        if not deadline.expired():
            raise
        raise ServiceError(
            f"the work in hand did not finish within {drain_seconds}s of the stop "
            "request; unfinished SQS messages are read again, unfinished backfill "
            "files are in the next run"
        ) from exc


@contextlib.contextmanager
def _stop_on_signals(
    stop: asyncio.Event, on_stop: Callable[[], None] = lambda: None
) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def request(name: str) -> None:
        if stop.is_set():
            return
        _log.info("bridge.stopping", signal=name)
        stop.set()
        on_stop()

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, request, sig.name)
    try:
        yield
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


def _metrics_app() -> Starlette:
    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/healthz", healthz), metrics_route()])
