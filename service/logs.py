"""Logging through structlog: JSON lines on stdout, the console renderer on a TTY.

Standard-library loggers (aiokafka, uvicorn) go through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from structlog.typing import Processor

from service.settings import LogFormat

# Third-party loggers that are chatty at INFO; they speak at WARNING unless DEBUG.
_QUIET_LIBRARIES = (
    "aiokafka",
    "alembic",
    "botocore",
    "httpcore",
    "httpx",
    "uvicorn.access",
)


def configure_logging(
    level: str = "INFO", fmt: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging to `stream` (stdout) at `level`.

    `fmt="auto"` renders for humans on a TTY and JSON lines otherwise.
    """
    out = stream if stream is not None else sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: Processor
    if use_json:
        shared.append(structlog.processors.dict_tracebacks)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Cached loggers would ignore structlog.testing.capture_logs in tests.
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    library_level = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(library_level)
    for name in ("uvicorn", "uvicorn.error"):
        # uvicorn installs its own handlers unless told otherwise; ours win.
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
