"""Forwarder fixtures: alerts and late receivers (moto comes from fixtures_aws)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from service.alerts import Alert

AlertFactory = Callable[..., Alert]
BASE_TIME = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def make_alert() -> AlertFactory:
    """Build an Alert: `n` picks the id and minutes after BASE_TIME."""

    def make(n: int = 0, **overrides: Any) -> Alert:
        moment = BASE_TIME + timedelta(minutes=n)
        values: dict[str, Any] = {
            "id": f"alert-{n:04d}",
            "detector": "mfa-missing",
            "severity": "high",
            "title": f"Acme Analytics acted without MFA #{n}",
            "third_party": "acme-analytics",
            "account_id": "111122223333",
            "actor": "arn:aws:sts::111122223333:assumed-role/AcmeAuditRole/acme",
            "source_ip": "203.0.113.10",
            "region": "us-east-1",
            "action": "s3:GetObject",
            "event_time": moment,
            "first_seen": moment,
            "last_seen": moment,
            "count": 1,
            "event_ids": [f"event-{n:04d}"],
            "status": "open",
            "details": {"mfa_authenticated": False},
        }
        values.update(overrides)
        return Alert(**values)

    return make


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class LateServer:
    """An HTTP server on a fixed port that starts only when asked (refused before)."""

    def __init__(self, handler: Callable[..., Any]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._app = Starlette(routes=[Route("/hook", handler, methods=["POST"])])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(
            self._app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("late server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)


@pytest.fixture
def late_server() -> Iterator[Callable[[Callable[..., Any]], LateServer]]:
    """Make servers for a handler on a port that refuses connections until started."""
    servers: list[LateServer] = []

    def make(handler: Callable[..., Any]) -> LateServer:
        server = LateServer(handler)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
