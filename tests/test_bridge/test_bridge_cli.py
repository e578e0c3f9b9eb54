"""`trailwarden bridge` usage errors exit 2 with a message naming the problem."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from service.cli import app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["s3"], "give --queue-url"),
        (["s3", "--queue-url", "q", "--backfill", "s3://b/"], "exclude each other"),
        (["s3", "--backfill", "s3://b/"], "needs --since and --until"),
        (
            [
                "s3",
                "--backfill",
                "s3://b/",
                "--since",
                "2024-05-02",
                "--until",
                "2024-05-01",
            ],
            "before --since",
        ),
        (["s3", "--queue-url", "q", "--wait-seconds", "30"], "bridge_wait_seconds"),
        (["eventbridge"], "TRAILWARDEN_BRIDGE_SECRET"),
    ],
)
def test_bridge_command_bad_usage_exits_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["bridge", *args])

    assert result.exit_code == 2
    assert message in result.output


def test_bridge_s3_kafka_unreachable_exits_1(
    aws_env: dict[str, str], free_port: object
) -> None:
    port = free_port()  # type: ignore[operator]
    args = ["bridge", "s3", "--queue-url", "http://q", "--metrics-port", "0"]
    args += ["--kafka-bootstrap-servers", f"127.0.0.1:{port}"]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 1
    assert "Kafka at 127.0.0.1" in result.output
