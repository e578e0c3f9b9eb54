"""`trailwarden check-config`: a good policy, a bad field, unreadable YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app

POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"


def test_check_config_examples_policy_ok(runner: CliRunner) -> None:
    result = runner.invoke(app, ["check-config", str(POLICY)])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ok: 2 third parties, 8 detectors enabled"


def test_check_config_disabled_detector_not_counted(
    runner: CliRunner, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("detectors:\n  mfa-missing: {enabled: false}\n")

    result = runner.invoke(app, ["check-config", str(policy)])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ok: 0 third parties, 7 detectors enabled"


@pytest.mark.parametrize(
    ("body", "field", "value"),
    [
        (
            "third_parties:\n  - id: acme\n    accounts: ['12345']\n",
            "third_parties[0].accounts[0]",
            "12345",
        ),
        (
            "third_parties:\n  - id: acme\n    accounts: ['444455556666']\n"
            "    networks: ['10.0.0.1/8']\n",
            "third_parties[0].networks[0]",
            "10.0.0.1/8",
        ),
        (
            "detectors:\n  high-risk-action: {severity: urgent}\n",
            "detectors.high-risk-action.severity",
            "urgent",
        ),
    ],
)
def test_check_config_bad_field_names_field_and_value(
    runner: CliRunner, tmp_path: Path, body: str, field: str, value: str
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(body)

    result = runner.invoke(app, ["check-config", str(policy)])

    assert result.exit_code == 2
    assert field in result.stderr
    assert value in result.stderr
    assert result.stdout == ""


def test_check_config_invalid_yaml_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("third_parties: [\n  - id: acme\n")

    result = runner.invoke(app, ["check-config", str(policy)])

    assert result.exit_code == 2
    assert "not valid YAML" in result.stderr


def test_check_config_missing_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["check-config", str(tmp_path / "absent.yaml")])

    assert result.exit_code == 2
    assert "absent.yaml" in result.stderr
