"""`trailwarden deliveries list|retry`: the outbox from the command line.

Exit status: 0 done, 1 unknown delivery or failing database, 2 bad usage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from service.forwarders.outbox import Delivery, DeliveryStatus
from service.forwarders.outbox_sql import SqlDeliveryOutbox, open_outbox
from service.store import StoreUnavailable, open_store

app = typer.Typer(
    name="deliveries",
    help="List outbox deliveries and retry failed ones.",
    no_args_is_help=True,
)
_out = Console()
_err = Console(stderr=True, soft_wrap=True)
_T = TypeVar("_T")

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="TRAILWARDEN_DATABASE_URL",
        help="The alert store: sqlite:///file.db or postgresql://user@host/db.",
    ),
]


@app.command("list")
def list_command(
    db: DbOption = "sqlite:///trailwarden.db",
    status: Annotated[
        str | None, typer.Option(help="pending, delivered or failed.")
    ] = None,
    destination: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    json: Annotated[bool, typer.Option("--json", help="JSON Lines output.")] = False,
) -> None:
    """Deliveries, newest first."""
    if status not in (None, "pending", "delivered", "failed"):
        _err.print(
            f"error: --status must be pending, delivered or failed (got {status!r})"
        )
        raise typer.Exit(2)

    chosen: DeliveryStatus | None = status  # type: ignore[assignment]
    items = _run(db, _list(db, chosen, destination, limit))
    if json:
        for delivery in items:
            typer.echo(orjson.dumps(_as_dict(delivery)).decode())
        return
    table = Table("id", "destination", "alert", "status", "attempts", "last error")
    for delivery in items:
        table.add_row(
            delivery.id,
            delivery.destination,
            delivery.alert_id,
            delivery.status,
            str(delivery.attempts),
            delivery.last_error or "",
        )
    _out.print(table)


@app.command("retry")
def retry_command(
    delivery_ids: Annotated[
        list[str], typer.Argument(help="Ids of failed deliveries.")
    ],
    db: DbOption = "sqlite:///trailwarden.db",
) -> None:
    """Move failed deliveries back to pending; the dispatcher sends them again."""
    problems = _run(db, _retry(db, delivery_ids))
    for problem in problems:
        _err.print(f"error: {problem}")
    if problems:
        raise typer.Exit(1)


async def _list(
    db: str, status: DeliveryStatus | None, destination: str | None, limit: int
) -> list[Delivery]:
    await _migrate(db)
    outbox = _open(db)
    try:
        items: list[Delivery] = []
        cursor = None
        while len(items) < limit:
            page = await outbox.list(
                status, min(500, limit - len(items)), cursor, destination=destination
            )
            items.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        return items
    finally:
        await outbox.close()


async def _retry(db: str, delivery_ids: list[str]) -> list[str]:
    await _migrate(db)
    outbox = _open(db)
    problems = []
    try:
        for delivery_id in delivery_ids:
            if await outbox.retry(delivery_id):
                _out.print(f"retrying {delivery_id}")
                continue
            delivery = await outbox.get(delivery_id)
            if delivery is None:
                problems.append(f"no delivery with id {delivery_id!r}")
            else:
                problems.append(
                    f"delivery {delivery_id!r} is {delivery.status}, not failed"
                )
    finally:
        await outbox.close()
    return problems


async def _migrate(db: str) -> None:
    """Bring the schema up to date, as `run` and `alerts` do, so a new database
    answers with no deliveries rather than a missing table."""
    store = open_store(db)
    await store.start()
    await store.close()


def _open(db: str) -> SqlDeliveryOutbox:
    try:
        return open_outbox(db)
    except ValueError as exc:
        _err.print(f"error: --db: {exc}")
        raise typer.Exit(2) from exc


def _run(db: str, work: Coroutine[Any, Any, _T]) -> _T:
    try:
        return asyncio.run(work)
    except StoreUnavailable as exc:
        _err.print(f"error: database {db.split('@')[-1]!r}: {exc}")
        raise typer.Exit(1) from exc
    except SQLAlchemyError as exc:
        _err.print(f"error: database {db.split('@')[-1]!r}: {type(exc).__name__}")
        raise typer.Exit(1) from exc


def _as_dict(delivery: Delivery) -> dict[str, object]:
    return {
        "id": delivery.id,
        "destination": delivery.destination,
        "destination_type": delivery.destination_type,
        "alert_id": delivery.alert_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at.isoformat(),
        "last_error": delivery.last_error,
        "created_at": delivery.created_at.isoformat(),
        "delivered_at": (
            delivery.delivered_at.isoformat() if delivery.delivered_at else None
        ),
    }
