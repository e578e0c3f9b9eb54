"""`trailwarden deliveries list|retry` on a SQLite outbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from typer.testing import CliRunner

from service.alerts import AlertChange
from service.cli import app
from service.forwarders.destinations import WebhookDestination
from service.forwarders.outbox import outbox_rows
from service.forwarders.outbox_sql import open_outbox
from service.store import open_store

HOOK = WebhookDestination(name="hook", type="webhook", url="http://h/", secret="k")


async def _failed_delivery(url: str, make_alert) -> str:
    store = open_store(url)
    await store.start()  # the schema, migrations included, as `run` makes it
    await store.close()
    outbox = open_outbox(url)
    try:
        changes = [AlertChange(make_alert(n), created=True) for n in range(2)]
        await outbox.add(outbox_rows(changes, [HOOK]))
        (head, _) = (await outbox.list(None, 2, None)).items[::-1]
        await outbox.mark_failed(head.id, "HTTP 410")
        return head.id
    finally:
        await outbox.close()


def test_deliveries_list_and_retry_failed(tmp_path: Path, make_alert) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    failed_id = asyncio.run(_failed_delivery(url, make_alert))
    runner = CliRunner()

    listed = runner.invoke(
        app, ["deliveries", "list", "--db", url, "--status", "failed", "--json"]
    )
    retried = runner.invoke(app, ["deliveries", "retry", "--db", url, failed_id])
    again = runner.invoke(
        app, ["deliveries", "retry", "--db", url, failed_id, "unknown-id"]
    )
    bad = runner.invoke(app, ["deliveries", "list", "--db", url, "--status", "lost"])

    assert listed.exit_code == 0, listed.output
    (line,) = listed.stdout.splitlines()
    assert orjson.loads(line)["id"] == failed_id
    assert retried.exit_code == 0
    assert again.exit_code == 1
    assert "is pending, not failed" in again.stderr
    assert "no delivery with id 'unknown-id'" in again.stderr
    assert bad.exit_code == 2


def test_deliveries_list_new_database_lists_none(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"

    listed = CliRunner().invoke(app, ["deliveries", "list", "--db", url, "--json"])

    assert listed.exit_code == 0, listed.output
    assert listed.stdout == ""
