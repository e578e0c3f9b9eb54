"""`trailwarden alerts`: the stored alerts as a table or JSON Lines."""

from __future__ import annotations

import json
from collections.abc import Callable

from typer.testing import CliRunner

from service.alerts import Alert
from service.cli import app


def test_alerts_json_one_valid_object_per_alert(
    runner: CliRunner, replayed_db: str, read_alerts: Callable[[str], list[Alert]]
) -> None:
    result = runner.invoke(app, ["alerts", "--db", replayed_db, "--json"])

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0, result.output
    assert sorted(line["id"] for line in lines) == sorted(
        alert.id for alert in read_alerts(replayed_db)
    )
    assert all(Alert.model_validate(line) for line in lines)


def test_alerts_detector_filter_only_that_detector(
    runner: CliRunner, replayed_db: str
) -> None:
    result = runner.invoke(
        app, ["alerts", "--db", replayed_db, "--json", "--detector", "mfa-missing"]
    )

    detectors = [json.loads(line)["detector"] for line in result.stdout.splitlines()]
    assert result.exit_code == 0, result.output
    assert detectors
    assert set(detectors) == {"mfa-missing"}


def test_alerts_limit_caps_output(runner: CliRunner, replayed_db: str) -> None:
    result = runner.invoke(
        app, ["alerts", "--db", replayed_db, "--json", "--limit", "2"]
    )

    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2


def test_alerts_table_lists_detectors(runner: CliRunner, replayed_db: str) -> None:
    result = runner.invoke(app, ["alerts", "--db", replayed_db])

    assert result.exit_code == 0, result.output
    assert "external-id-mismatch" in result.stdout
    assert "acme-analytics" in result.stdout


def test_alerts_empty_store_says_so(runner: CliRunner, db_url: str) -> None:
    result = runner.invoke(app, ["alerts", "--db", db_url])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "no alerts"


def test_alerts_unknown_severity_is_a_usage_error(
    runner: CliRunner, replayed_db: str
) -> None:
    result = runner.invoke(app, ["alerts", "--db", replayed_db, "--severity", "nope"])

    assert result.exit_code == 2
    assert "not one of low, medium, high, critical" in result.output


def test_version_alone_prints_the_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("trailwarden ")
