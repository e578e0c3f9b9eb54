"""The `trailwarden` command: run, replay, alerts, check-config and migrate.

Exit status: 0 done (undecodable inputs are reported, not fatal), 1 a missing
input path or a failing store, broker or port, 2 bad configuration or usage.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
)
from rich.table import Table

from detectors.detector import SEVERITIES
from detectors.engine import DetectionEngine
from detectors.third_parties import (
    DETECTOR_IDS,
    Policy,
    PolicyError,
    empty_policy,
    load_policy,
)
from service import __version__
from service.alerts import ALERT_STATUSES, Alert, AlertQuery
from service.bridge.cli import bridge_app
from service.exits import fail, run_or_exit, settings_or_exit, stderr
from service.forwarders.cli import app as deliveries_app
from service.forwarders.destinations import DestinationsError
from service.inputs import iter_input_files
from service.logs import configure_logging
from service.replay import print_summary, replay_files
from service.runtime import configured_destinations, run_service, serve_api
from service.settings import Settings
from service.store import AlertStore, open_store
from service.store.migrate import head_revision

app = typer.Typer(
    name="trailwarden",
    help="Watch AWS CloudTrail for third-party access.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(bridge_app, name="bridge")
app.add_typer(deliveries_app, name="deliveries")
_out = Console()

_DEFAULT_DB: str = Settings.model_fields["database_url"].default
_DEFAULT_HOST: str = Settings.model_fields["http_host"].default
_DEFAULT_PORT: int = Settings.model_fields["http_port"].default
_PAGE_SIZE = 100
_TABLE_WIDTH = 120
_T = TypeVar("_T")

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="TRAILWARDEN_DATABASE_URL",
        help="Alert store: sqlite:///file.db or postgresql://user@host/db.",
    ),
]


def main() -> None:
    """Console-script entry point."""
    app()


def _print_version(wanted: bool) -> None:
    if wanted:
        _out.print(f"trailwarden {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    # stdout carries tables and JSON Lines; logs go to stderr (`run` reconfigures).
    configure_logging("WARNING", stream=sys.stderr)


@app.command()
def run(
    kafka_bootstrap_servers: Annotated[str | None, typer.Option()] = None,
    kafka_topic: Annotated[str | None, typer.Option()] = None,
    kafka_group_id: Annotated[str | None, typer.Option()] = None,
    database_url: Annotated[str | None, typer.Option()] = None,
    policy_file: Annotated[Path | None, typer.Option()] = None,
    destinations_file: Annotated[
        Path | None, typer.Option(help="Where alerts are sent; see Destinations.")
    ] = None,
    api_tokens: Annotated[
        str | None, typer.Option(help="Comma-separated; prefer the env variable.")
    ] = None,
    webhook_urls: Annotated[str | None, typer.Option(help="Comma-separated.")] = None,
    webhook_secret: Annotated[
        str | None, typer.Option(help="Prefer the env variable.")
    ] = None,
    http_host: Annotated[str | None, typer.Option()] = None,
    http_port: Annotated[int | None, typer.Option()] = None,
    kafka_max_batch_records: Annotated[int | None, typer.Option()] = None,
    kafka_session_timeout_seconds: Annotated[float | None, typer.Option()] = None,
    webhook_timeout_seconds: Annotated[float | None, typer.Option()] = None,
    webhook_max_attempts: Annotated[int | None, typer.Option()] = None,
    dedup_window_seconds: Annotated[int | None, typer.Option()] = None,
    shutdown_timeout_seconds: Annotated[float | None, typer.Option()] = None,
    event_grace_seconds: Annotated[int | None, typer.Option()] = None,
    store_retry_max_seconds: Annotated[float | None, typer.Option()] = None,
    log_level: Annotated[str | None, typer.Option()] = None,
    log_format: Annotated[
        str | None, typer.Option(help="auto, json or console.")
    ] = None,
) -> None:
    """Consume CloudTrail from Kafka; serve the API and metrics.

    Every flag is also read from TRAILWARDEN_<FLAG> (e.g. TRAILWARDEN_KAFKA_TOPIC);
    flags win over the environment.
    """
    settings = settings_or_exit(
        lambda: Settings.from_overrides(
            kafka_bootstrap_servers=kafka_bootstrap_servers,
            kafka_topic=kafka_topic,
            kafka_group_id=kafka_group_id,
            database_url=database_url,
            policy_file=policy_file,
            destinations_file=destinations_file,
            api_tokens=api_tokens,
            webhook_urls=webhook_urls,
            webhook_secret=webhook_secret,
            http_host=http_host,
            http_port=http_port,
            kafka_max_batch_records=kafka_max_batch_records,
            kafka_session_timeout_seconds=kafka_session_timeout_seconds,
            webhook_timeout_seconds=webhook_timeout_seconds,
            webhook_max_attempts=webhook_max_attempts,
            dedup_window_seconds=dedup_window_seconds,
            shutdown_timeout_seconds=shutdown_timeout_seconds,
            event_grace_seconds=event_grace_seconds,
            store_retry_max_seconds=store_retry_max_seconds,
            log_level=log_level,
            log_format=log_format,
        )
    )
    if settings.policy_file is not None:
        _load_policy_or_exit(settings.policy_file)
    try:
        configured_destinations(settings)
    except DestinationsError as exc:
        fail(str(exc))
    _store_or_exit(settings.database_url, "--database-url")

    configure_logging(settings.log_level, settings.log_format)
    run_or_exit(run_service(settings))


@app.command()
def replay(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Files or folders: S3 bucket layouts, .json, .json.gz, JSON Lines, "
            "EventBridge dumps."
        ),
    ],
    policy: Annotated[
        Path | None, typer.Option(help="Third-party registry (YAML).")
    ] = None,
    db: DbOption = _DEFAULT_DB,
    serve: Annotated[
        bool, typer.Option("--serve", help="Keep the API up afterwards.")
    ] = False,
    http_host: Annotated[str, typer.Option()] = _DEFAULT_HOST,
    http_port: Annotated[int, typer.Option()] = _DEFAULT_PORT,
) -> None:
    """Run the detectors over CloudTrail files and store the alerts."""
    missing = [path for path in paths if not path.exists()]
    if missing:
        for path in missing:
            stderr.print(f"error: no such file or folder: {path}", markup=False)
        raise typer.Exit(1)
    if policy is None:
        stderr.print(
            "note: no --policy given, so no third parties are registered; "
            "see examples/policy.yaml",
            highlight=False,
        )
    loaded = empty_policy() if policy is None else _load_policy_or_exit(policy)

    serve_settings = None
    if serve:
        serve_settings = settings_or_exit(
            lambda: Settings.from_overrides(http_host=http_host, http_port=http_port)
        )
    store = _store_or_exit(db)

    files = list(iter_input_files(paths))
    engine = DetectionEngine(loaded)
    run_or_exit(_replay(files, engine, store, serve_settings))


async def _replay(
    files: list[Path],
    engine: DetectionEngine,
    store: AlertStore,
    serve_settings: Settings | None,
) -> None:
    await store.start()
    try:
        with _progress(len(files)) as advance:
            summary = await replay_files(files, engine, store, on_file_done=advance)
        print_summary(_out, summary, engine.detector_ids)
        if serve_settings is not None:
            url = f"http://{serve_settings.http_host}:{serve_settings.http_port}"
            _out.print(f"Serving {url}/alerts (Ctrl-C to stop)", highlight=False)
            await serve_api(store, serve_settings, asyncio.Event())
    finally:
        await store.close()


@contextmanager
def _progress(total: int) -> Iterator[Callable[[Path], None]]:
    if not _out.is_terminal:
        yield lambda _path: None
        return

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_out, transient=True) as progress:
        task = progress.add_task("Replaying", total=total)
        yield lambda _path: progress.advance(task)


@app.command()
def alerts(
    db: DbOption = _DEFAULT_DB,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON Lines instead of a table.")
    ] = False,
    detector: Annotated[str | None, typer.Option(help="Only this detector.")] = None,
    severity: Annotated[
        str | None,
        typer.Option(
            callback=lambda v: _one_of(v, SEVERITIES),
            help=f"Only this severity: {', '.join(SEVERITIES)}.",
        ),
    ] = None,
    third_party: Annotated[
        str | None, typer.Option(help="Only this third party's id.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            callback=lambda v: _one_of(v, ALERT_STATUSES),
            help=f"Only this status: {', '.join(ALERT_STATUSES)}.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 100,
) -> None:
    """List stored alerts, newest first."""
    query = AlertQuery(
        detector=detector, severity=severity, third_party=third_party, status=status
    )
    found = run_or_exit(_fetch_alerts(_store_or_exit(db), query, limit))
    if as_json:
        for alert in found:
            sys.stdout.write(alert.model_dump_json() + "\n")
        return
    _print_alerts(found)


async def _fetch_alerts(
    store: AlertStore, query: AlertQuery, limit: int
) -> list[Alert]:
    await store.start()
    try:
        found: list[Alert] = []
        cursor: str | None = None
        while len(found) < limit:
            page = await store.list_alerts(
                query, limit=min(_PAGE_SIZE, limit - len(found)), cursor=cursor
            )
            found.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    finally:
        await store.close()

    return found


@app.command("check-config")
def check_config(
    file: Annotated[Path, typer.Argument(help="Policy file (YAML).")],
) -> None:
    """Validate a policy file; exit 2 naming the bad field and value."""
    policy = _load_policy_or_exit(file)
    enabled = sum(policy.detectors.get(id_).enabled for id_ in DETECTOR_IDS)
    parties = len(policy.third_parties)
    _out.print(
        f"ok: {parties} third parties, {enabled} detectors enabled", highlight=False
    )


@app.command()
def migrate(db: DbOption = _DEFAULT_DB) -> None:
    """Bring the database schema to this version's newest revision."""
    store = _store_or_exit(db)
    run_or_exit(_migrate(store))
    _out.print(f"ok: schema at revision {head_revision()}", highlight=False)


async def _migrate(store: AlertStore) -> None:
    # Starting the store runs the migrations, under a lock on PostgreSQL.
    await store.start()
    await store.close()


def _print_alerts(found: list[Alert]) -> None:
    if not found:
        _out.print("no alerts")
        return

    title = f"{len(found)} alerts, newest first"
    if _out.width < _TABLE_WIDTH:
        # A table squeezed into a narrow terminal folds every cell to a letter
        # a line; one line per alert stays readable and greppable.
        _out.print(title, highlight=False)
        for alert in found:
            _out.print(
                f"{alert.last_seen:%Y-%m-%d %H:%M}  {alert.severity:<8} "
                f"{alert.detector}  {alert.third_party or '-'}  {alert.action}  "
                f"{alert.source_ip or '-'}  x{alert.count}",
                highlight=False,
                markup=False,
            )
        _out.print("Details and ids: trailwarden alerts --json", style="dim")
        return

    table = Table(title=title, title_justify="left")
    for column in ("last seen (UTC)", "detector", "severity"):
        table.add_column(column, no_wrap=True)
    for column in ("third party", "action", "source ip"):
        table.add_column(column, overflow="fold")
    table.add_column("count", justify="right")
    for alert in found:
        table.add_row(
            alert.last_seen.strftime("%Y-%m-%d %H:%M"),
            alert.detector,
            alert.severity,
            alert.third_party or "-",
            alert.action,
            alert.source_ip or "-",
            str(alert.count),
        )
    _out.print(table)
    _out.print("Details and ids: trailwarden alerts --json", style="dim")


def _one_of(value: str | None, allowed: tuple[str, ...]) -> str | None:
    if value is not None and value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _load_policy_or_exit(path: Path) -> Policy:
    try:
        return load_policy(path)
    except PolicyError as exc:
        stderr.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from exc


def _store_or_exit(url: str, flag: str = "--db") -> AlertStore:
    try:
        return open_store(url)
    except ValueError as exc:
        fail(f"{flag}: {exc}")
