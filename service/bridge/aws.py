"""boto3 clients for S3 and SQS from the standard credential chain.

boto3 runs in worker threads (asyncio.to_thread) rather than aiobotocore: it is
already a dependency of moto, and aiobotocore pins botocore to a narrow range
that conflicts with the boto3 beside it. The bridge makes few concurrent calls.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from service.bridge.settings import BridgeSettings

__all__ = ["aws_client"]

_CONNECT_TIMEOUT_SECONDS = 5
_READ_TIMEOUT_SECONDS = 30


def aws_client(service: str, settings: BridgeSettings) -> Any:
    """A client for `service` with explicit timeouts and bounded, jittered retries.

    Credentials come from the default chain: environment, shared profile, web
    identity (EKS service accounts), container and instance roles.
    """
    # SQS long polls hold the connection for up to bridge_wait_seconds.
    read_timeout = _READ_TIMEOUT_SECONDS + settings.bridge_wait_seconds
    config = Config(
        connect_timeout=_CONNECT_TIMEOUT_SECONDS,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=20,
    )
    session = boto3.session.Session(region_name=settings.aws_region)
    return session.client(
        service, endpoint_url=settings.aws_endpoint_url, config=config
    )
