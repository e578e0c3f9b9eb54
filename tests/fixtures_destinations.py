"""The far ends of destinations, for end-to-end runs: HTTP receivers and SNS inboxes.

Register with `pytest_plugins = ["fixtures_destinations"]`, after `fixtures_aws`.
`http_receiver` makes receivers that refuse connections until started and answer
as scripted per path; `sns_inbox` makes an SNS topic with an SQS queue subscribed;
`alert_waves` turns the stratus GetPasswordData records into waves of alerts.
"""

from __future__ import annotations

import asyncio
import copy
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.forwarders.webhook import verify_signature

DATA = Path(__file__).parent / "data" / "integration"
POLICY_FILE = DATA / "policy.yaml"
WAVE_SPACING = timedelta(hours=2)
"""Longer than the default dedup window, so each wave opens new alerts."""
ALERTS_PER_WAVE = 3
"""action-not-allowed (medium), high-risk-action and source-network-not-allowed."""

_EVENT_IDS = uuid.UUID("6c0f5a8e-3d2b-4f7a-9e1c-5b8d2a4f6e13")


@dataclass(frozen=True)
class ReceivedRequest:
    """One POST as the receiver got it; header names are lowercase."""

    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        return verify_signature(
            secret,
            self.headers.get("x-trailwarden-timestamp", ""),
            self.body,
            self.headers.get("x-trailwarden-signature", ""),
        )


@dataclass
class HttpReceiver:
    """A real HTTP server on a port fixed up front: refused until `start`.

    `POST /<name>` is recorded under `name`. Each name answers from its script
    (`script(name, (429, {"Retry-After": "1"}))`), then with its status (`answer`,
    200 unless set).
    """

    port: int
    _received: dict[str, list[ReceivedRequest]] = field(default_factory=dict)
    _scripts: dict[str, deque[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    _statuses: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def script(self, name: str, *answers: tuple[int, dict[str, str]]) -> None:
        with self._lock:
            self._scripts.setdefault(name, deque()).extend(answers)

    def answer(self, name: str, status: int) -> None:
        with self._lock:
            self._statuses[name] = status

    def requests(self, name: str) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._received.get(name, ()))

    def start(self) -> None:
        app = Starlette(routes=[Route("/{name}", self._handle, methods=["POST"])])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"receiver on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    async def _handle(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        with self._lock:
            received = ReceivedRequest(dict(request.headers), body)
            self._received.setdefault(name, []).append(received)
            script = self._scripts.get(name)
            if script:
                status, headers = script.popleft()
            else:
                status, headers = self._statuses.get(name, 200), {}
        return Response(status_code=status, headers=headers)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def http_receiver() -> Iterator[Callable[[], HttpReceiver]]:
    """Make receivers (not started: connections are refused); stopped at the end."""
    receivers: list[HttpReceiver] = []

    def make() -> HttpReceiver:
        receiver = HttpReceiver(_free_port())
        receivers.append(receiver)
        return receiver

    yield make
    for receiver in receivers:
        receiver.stop()


@dataclass
class SnsInbox:
    """An SNS topic and the SQS queue subscribed to it (SNS envelopes, not raw)."""

    topic_arn: str
    queue_url: str
    _sqs: Any
    envelopes: list[dict[str, Any]] = field(default_factory=list)

    async def collect(self) -> list[dict[str, Any]]:
        """Read and delete what the queue holds now; every envelope read so far."""
        self.envelopes.extend(await asyncio.to_thread(self._receive))
        return self.envelopes

    def _receive(self) -> list[dict[str, Any]]:
        answer = self._sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        messages = answer.get("Messages", [])
        for message in messages:
            # FIFO queues hold back a group's next message until this one is gone.
            self._sqs.delete_message(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        return [orjson.loads(message["Body"]) for message in messages]


@pytest.fixture
def sns_inbox(
    aws_client: Callable[[str], Any],
) -> Iterator[Callable[..., SnsInbox]]:
    """Make a topic (FIFO with `fifo=True`) with a queue subscribed; both deleted."""
    sns, sqs = aws_client("sns"), aws_client("sqs")
    made: list[SnsInbox] = []

    def make(*, fifo: bool = False) -> SnsInbox:
        name = f"trailwarden-{uuid.uuid4().hex[:10]}" + (".fifo" if fifo else "")
        topic_attributes = {"FifoTopic": "true"} if fifo else {}
        topic = sns.create_topic(Name=name, Attributes=topic_attributes)["TopicArn"]
        queue_attributes = {"FifoQueue": "true"} if fifo else {}
        queue = sqs.create_queue(QueueName=name, Attributes=queue_attributes)
        queue_arn = sqs.get_queue_attributes(
            QueueUrl=queue["QueueUrl"], AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        inbox = SnsInbox(topic, queue["QueueUrl"], sqs)
        made.append(inbox)
        return inbox

    yield make
    for inbox in made:
        sns.delete_topic(TopicArn=inbox.topic_arn)
        sqs.delete_queue(QueueUrl=inbox.queue_url)


def _wave(templates: list[dict[str, Any]], wave: int, again: int) -> list[bytes]:
    shift = WAVE_SPACING * wave + timedelta(seconds=again)
    records = []
    for template in templates:
        record = copy.deepcopy(template)
        moment = datetime.fromisoformat(record["eventTime"]) + shift
        record["eventTime"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        name = f"{wave}/{again}/{template['eventID']}"
        record["eventID"] = str(uuid.uuid5(_EVENT_IDS, name))
        records.append(orjson.dumps(record))
    return records


@pytest.fixture(scope="session")
def alert_waves() -> Callable[..., list[bytes]]:
    """Kafka messages: the six stratus GetPasswordData records once per wave.

    Under `POLICY_FILE` each wave opens ALERTS_PER_WAVE alerts, WAVE_SPACING after
    the wave before (a recurrence: `repeat`, `previous_alert_id`). `again=n`
    gives the same wave's records with new event ids, `n` seconds later: more
    occurrences of the alerts that wave opened.
    """
    lines = (DATA / "stratus_ec2_get_password_data.jsonl").read_bytes().splitlines()
    templates = [orjson.loads(line) for line in lines]

    def make(waves: Iterable[int], *, again: int = 0) -> list[bytes]:
        return [message for n in waves for message in _wave(templates, n, again)]

    return make
