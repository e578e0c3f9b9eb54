"""`trailwarden run` settings checks, and `python -m service`; no broker needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app

POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--http-host", "0.0.0.0"], "http_host '0.0.0.0' is not a loopback"),
        (["--log-format", "fancy"], "log_format"),
        (["--http-port", "0"], "http_port"),
        (["--database-url", "mysql://db/x"], "unsupported database URL"),
    ],
)
def test_run_bad_setting_exits_2_naming_it(
    runner: CliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["run", *args])

    assert result.exit_code == 2
    assert message in result.stderr


def test_run_bad_policy_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("third_parties: [{id: Bad Slug, accounts: ['444455556666']}]\n")

    result = runner.invoke(app, ["run", "--policy-file", str(policy)])

    assert result.exit_code == 2
    assert "third_parties[0].id" in result.stderr


def test_run_flag_overrides_environment(runner: CliRunner) -> None:
    """A valid flag wins over an invalid environment value."""
    result = runner.invoke(
        app,
        ["run", "--http-host", "127.0.0.1", "--database-url", "mysql://db/x"],
        env={"TRAILWARDEN_HTTP_HOST": "0.0.0.0"},
    )

    assert result.exit_code == 2
    assert "http_host" not in result.stderr
    assert "unsupported database URL" in result.stderr


def test_python_m_service_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "check-config", str(POLICY)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 2 third parties")


def test_run_bad_destinations_file_exits_2_naming_field(
    runner: CliRunner, tmp_path: Path
) -> None:
    destinations = tmp_path / "destinations.yaml"
    destinations.write_text(
        "destinations: [{name: oncall, type: webhook, url: 'ftp://hooks'}]\n"
    )

    result = runner.invoke(app, ["run", "--destinations-file", str(destinations)])

    assert result.exit_code == 2
    assert "destinations[0].url" in result.stderr
    assert "ftp://hooks" in result.stderr
