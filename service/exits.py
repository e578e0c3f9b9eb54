"""Exit codes of the CLI commands: 2 for bad settings or usage, 1 when a part fails.

A part is our own infrastructure: the store, the broker, AWS, an HTTP port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from service.errors import ServiceError

_T = TypeVar("_T")

stderr = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` on stderr and exit with `code`."""
    stderr.print(f"error: {message}", highlight=False, markup=False)
    raise typer.Exit(code)


def settings_or_exit(build: Callable[[], _T]) -> _T:
    """`build()`; each validation error is printed as `field: message`, exit 2."""
    try:
        return build()
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            message = error["msg"].removeprefix("Value error, ")
            stderr.print(f"error: {field}: {message}", highlight=False, markup=False)
        raise typer.Exit(2) from exc


def run_or_exit(work: Coroutine[Any, Any, _T]) -> _T:
    """Run `work`; a part failing (ServiceError) exits with 1."""
    try:
        return asyncio.run(work)
    except ServiceError as exc:
        stderr.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(1) from exc
