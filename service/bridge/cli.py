"""`trailwarden bridge s3` and `trailwarden bridge eventbridge`.

Exit status: 0 done or stopped by a signal, 1 Kafka, AWS or a port failing,
2 bad configuration or usage.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from service.bridge.backfill import BackfillRange, BackfillSummary
from service.bridge.runner import (
    run_backfill_command,
    run_eventbridge,
    run_sqs_bridge,
)
from service.bridge.settings import BridgeSettings
from service.bridge.transfer import FileOutcome
from service.exits import fail, run_or_exit, settings_or_exit
from service.logs import configure_logging

__all__ = ["bridge_app"]

bridge_app = typer.Typer(
    name="bridge",
    help="Feed Kafka from S3 (through SQS, or an archive) and from EventBridge.",
    no_args_is_help=True,
)
_out = Console()
_T = TypeVar("_T")
_DAY = ["%Y-%m-%d"]

BootstrapOption = Annotated[
    str | None,
    typer.Option(help="Kafka brokers (env TRAILWARDEN_KAFKA_BOOTSTRAP_SERVERS)."),
]
TopicOption = Annotated[
    str | None, typer.Option(help="Topic to produce to (default cloudtrail).")
]
DeadLetterOption = Annotated[
    str | None,
    typer.Option(help="Topic for unreadable files (default <topic>.dead-letters)."),
]
LogLevelOption = Annotated[str | None, typer.Option()]
LogFormatOption = Annotated[str | None, typer.Option(help="auto, json or console.")]


@bridge_app.command("s3")
def s3(
    queue_url: Annotated[
        str | None, typer.Option(help="SQS queue receiving the S3 notifications.")
    ] = None,
    backfill: Annotated[
        str | None,
        typer.Option(help="Replay an archive instead: s3://bucket/prefix."),
    ] = None,
    since: Annotated[
        datetime | None, typer.Option(formats=_DAY, help="First day (UTC).")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(formats=_DAY, help="Last day, included.")
    ] = None,
    accounts: Annotated[
        str | None, typer.Option(help="Only these accounts, comma-separated.")
    ] = None,
    regions: Annotated[
        str | None, typer.Option(help="Only these regions, comma-separated.")
    ] = None,
    state_file: Annotated[
        Path | None,
        typer.Option(help="Backfill progress (default .trailwarden-backfill-<hash>)."),
    ] = None,
    kafka_bootstrap_servers: BootstrapOption = None,
    topic: TopicOption = None,
    dead_letter_topic: DeadLetterOption = None,
    endpoint_url: Annotated[
        str | None, typer.Option(help="AWS endpoint (moto, LocalStack).")
    ] = None,
    region: Annotated[str | None, typer.Option(help="AWS region.")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="/metrics port (default 9108); 0 disables.")
    ] = None,
    visibility_timeout: Annotated[
        int | None, typer.Option(help="SQS visibility timeout, seconds.")
    ] = None,
    wait_seconds: Annotated[
        int | None, typer.Option(help="SQS long-poll wait, seconds.")
    ] = None,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Bridge CloudTrail files from S3 into Kafka, one message per record.

    With --queue-url, follow the bucket's notifications; with --backfill,
    replay the days from --since to --until and resume where a run stopped.
    """
    settings = settings_or_exit(
        lambda: BridgeSettings.from_overrides(
            kafka_bootstrap_servers=kafka_bootstrap_servers,
            kafka_topic=topic,
            bridge_dead_letter_topic=dead_letter_topic,
            aws_endpoint_url=endpoint_url,
            aws_region=region,
            bridge_queue_url=queue_url,
            bridge_metrics_port=metrics_port,
            bridge_visibility_timeout_seconds=visibility_timeout,
            bridge_wait_seconds=wait_seconds,
            log_level=log_level,
            log_format=log_format,
        )
    )
    if backfill is None:
        if settings.bridge_queue_url is None:
            fail("give --queue-url (or TRAILWARDEN_BRIDGE_QUEUE_URL) or --backfill")
        configure_logging(settings.log_level, settings.log_format)
        run_or_exit(run_sqs_bridge(settings, settings.bridge_queue_url))
        return

    if queue_url is not None:
        fail("--queue-url and --backfill exclude each other")
    if since is None or until is None:
        fail("--backfill needs --since and --until (YYYY-MM-DD)")
    span = _range_or_exit(backfill, since, until, accounts, regions)
    state_path = state_file or Path(f".trailwarden-backfill-{span.fingerprint()}.json")
    # stdout carries the progress bar and the summary; logs go to stderr.
    configure_logging(settings.log_level, settings.log_format, stream=sys.stderr)
    with _progress() as (started, advance):
        summary = run_or_exit(
            run_backfill_command(
                settings, span, state_path, on_start=started, on_file_done=advance
            )
        )
    _print_summary(summary, state_path)


@bridge_app.command("eventbridge")
def eventbridge(
    port: Annotated[int | None, typer.Option(help="Port (default 8081).")] = None,
    host: Annotated[
        str | None, typer.Option(help="Address (default 127.0.0.1).")
    ] = None,
    secret_header: Annotated[
        str | None,
        typer.Option(help="Header carrying TRAILWARDEN_BRIDGE_SECRET."),
    ] = None,
    kafka_bootstrap_servers: BootstrapOption = None,
    topic: TopicOption = None,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Serve an endpoint for EventBridge API destinations; each event goes to Kafka.

    The secret comes from TRAILWARDEN_BRIDGE_SECRET only (flags show in `ps`).
    """
    settings = settings_or_exit(
        lambda: BridgeSettings.from_overrides(
            bridge_http_port=port,
            bridge_http_host=host,
            bridge_secret_header=secret_header,
            kafka_bootstrap_servers=kafka_bootstrap_servers,
            kafka_topic=topic,
            log_level=log_level,
            log_format=log_format,
        )
    )
    if settings.bridge_secret is None:
        fail("set TRAILWARDEN_BRIDGE_SECRET to the API destination's header value")
    configure_logging(settings.log_level, settings.log_format)
    run_or_exit(run_eventbridge(settings))


def _range_or_exit(
    url: str,
    since: datetime,
    until: datetime,
    accounts: str | None,
    regions: str | None,
) -> BackfillRange:
    try:
        return BackfillRange.from_url(
            url, since.date(), until.date(), _split(accounts), _split(regions)
        )
    except ValueError as exc:
        fail(str(exc))


def _split(value: str | None) -> frozenset[str]:
    return frozenset(part.strip() for part in (value or "").split(",") if part.strip())


@contextmanager
def _progress() -> Iterator[
    tuple[Callable[[int], None], Callable[[str, FileOutcome], None]]
]:
    if not _out.is_terminal:
        yield (lambda _total: None), (lambda _key, _outcome: None)
        return

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_out, transient=True) as progress:
        task = progress.add_task("Backfilling", total=None)
        yield (
            lambda total: progress.update(task, total=total),
            lambda _key, _outcome: progress.advance(task),
        )


def _print_summary(summary: BackfillSummary, state_path: Path) -> None:
    done = ", ".join(f"{count} {name}" for name, count in summary.outcomes.items())
    _out.print(
        f"{summary.listed} files in range, {summary.already_done} done before; "
        f"this run: {done or 'nothing to do'}",
        highlight=False,
    )
    if summary.interrupted:
        _out.print(f"stopped early; run again to resume ({state_path})", markup=False)
