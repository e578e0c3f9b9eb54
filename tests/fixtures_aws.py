"""moto in server mode: S3, SQS and SNS over real HTTP on 127.0.0.1, for the session.

`aws_endpoint` is the URL; `aws_env` puts test credentials, the region and the
endpoint in the environment (also returned, for subprocesses); `aws_client`
builds boto3 clients pointed at the server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

AWS_REGION = "us-east-1"
# moto's default account; ARNs of queues and topics it creates use it.
AWS_ACCOUNT_ID = "123456789012"
_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    """The URL of a moto server started for the session (port chosen by the OS)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(aws_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Test credentials, region and endpoint, set in os.environ and returned.

    Any AWS_PROFILE or real credentials of the developer are removed first.
    """
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    env = {
        **_CREDENTIALS,
        "AWS_REGION": AWS_REGION,
        "AWS_DEFAULT_REGION": AWS_REGION,
        "AWS_ENDPOINT_URL": aws_endpoint,
        "TRAILWARDEN_AWS_ENDPOINT_URL": aws_endpoint,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def aws_client(aws_endpoint: str) -> Callable[[str], Any]:
    """Make a boto3 client for a service (s3, sqs, sns, ...) on the moto server."""

    def make(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=aws_endpoint,
            region_name=AWS_REGION,
            aws_access_key_id=_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    return make
