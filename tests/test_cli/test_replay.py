"""`trailwarden replay`: examples through every detector, summary, bad inputs."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from detectors.third_parties import DETECTOR_IDS
from service.alerts import Alert
from service.cli import app
from service.dead_letters import DeadLetter

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INPUTS = EXAMPLES / "inputs"
POLICY = EXAMPLES / "policy.yaml"
MORNING = next(INPUTS.rglob("*_20240514T1315Z_*.json.gz"))


def _row(output: str, label: str) -> list[str]:
    """The cells after `label` in the summary table row that starts with it."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│┃|]", line) if cell.strip()]
        if cells and cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in:\n{output}")


def test_replay_examples_alert_from_every_detector(
    replayed_db: str, read_alerts: Callable[[str], list[Alert]]
) -> None:
    alerts = read_alerts(replayed_db)

    assert {alert.detector for alert in alerts} == set(DETECTOR_IDS)


def test_replay_examples_clean_activity_alerts_nothing(
    replayed_db: str, read_alerts: Callable[[str], list[Alert]]
) -> None:
    """Acme's morning session and Nimbus's MFA session are within policy."""
    alerts = read_alerts(replayed_db)

    actors = {alert.actor or "" for alert in alerts}
    assert not any("acme-audit-0514" in actor for actor in actors)
    assert not any("nimbus-nightly" in actor for actor in actors)


def test_replay_examples_summary_counts_match_store(
    runner: CliRunner, db_url: str, read_alerts: Callable[[str], list[Alert]]
) -> None:
    result = runner.invoke(
        app, ["replay", "--policy", str(POLICY), "--db", db_url, str(INPUTS)]
    )

    alerts = read_alerts(db_url)
    assert result.exit_code == 0, result.output
    assert _row(result.stdout, "files read") == ["5"]
    assert _row(result.stdout, "undecodable") == ["0"]
    assert _row(result.stdout, "records") == ["17"]
    assert _row(result.stdout, "from records_file") == ["11"]
    assert _row(result.stdout, "from json_lines") == ["6"]
    assert _row(result.stdout, "skipped (digest)") == ["1"]
    assert _row(result.stdout, "total")[1] == str(len(alerts))
    for detector in DETECTOR_IDS:
        new = sum(alert.detector == detector for alert in alerts)
        assert _row(result.stdout, detector)[1] == str(new)


def test_replay_undecodable_file_reported_and_kept(
    runner: CliRunner,
    db_url: str,
    tmp_path: Path,
    read_dead_letters: Callable[[str], list[DeadLetter]],
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(MORNING, inputs / "good.json.gz")
    broken = inputs / "broken.json.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00 this is not a gzip stream")

    result = runner.invoke(
        app, ["replay", "--policy", str(POLICY), "--db", db_url, str(inputs)]
    )

    letters = read_dead_letters(db_url)
    assert result.exit_code == 0, result.output
    assert _row(result.stdout, "files read") == ["2"]
    assert _row(result.stdout, "undecodable") == ["1"]
    assert _row(result.stdout, "records") == ["5"]
    failure = _row(result.stdout, str(broken))
    assert failure[0] == "bad_gzip"
    assert [(letter.source, letter.reason) for letter in letters] == [
        (str(broken), "bad_gzip")
    ]


def test_replay_missing_path_exits_1(runner: CliRunner, db_url: str) -> None:
    result = runner.invoke(app, ["replay", "--db", db_url, "no/such/folder"])

    assert result.exit_code == 1
    assert "no/such/folder" in result.stderr


def test_replay_bad_policy_exits_2(
    runner: CliRunner, db_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("organization:\n  accounts: ['not-an-account']\n")

    result = runner.invoke(
        app, ["replay", "--policy", str(policy), "--db", db_url, str(MORNING)]
    )

    assert result.exit_code == 2
    assert "organization.accounts[0]" in result.stderr
    assert "not-an-account" in result.stderr


def test_replay_without_policy_notes_it_and_succeeds(
    runner: CliRunner, db_url: str
) -> None:
    result = runner.invoke(app, ["replay", "--db", db_url, str(MORNING)])

    assert result.exit_code == 0, result.output
    assert "no --policy given" in result.stderr
    assert _row(result.stdout, "records") == ["5"]
