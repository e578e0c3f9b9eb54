"""uvicorn as one task among others: no signal handlers, bind failures as errors.

The runtime and the bridge own SIGTERM and SIGINT themselves; uvicorn would
otherwise install its own handlers and exit the process when it cannot bind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import structlog
import uvicorn

from service.errors import ServiceError

_log = structlog.get_logger(__name__)


class HttpServer(uvicorn.Server):
    """Serves an ASGI app on host:port until `should_exit` is set."""

    def __init__(self, app: Any, host: str, port: int, *, name: str) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            # Our apps have no startup work; a lifespan task would only log a
            # CancelledError traceback when a failing sibling stops the group.
            lifespan="off",
        )
        super().__init__(config)
        self._name = name
        self._address = f"{host}:{port}"

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def serve_checked(self) -> None:
        """Serve; raise ServiceError when the server cannot start."""
        try:
            await self.serve()
        except SystemExit as exc:
            raise ServiceError(
                f"{self._name} could not start on {self._address}"
            ) from exc
        _log.info("http.stopped", server=self._name, address=self._address)
