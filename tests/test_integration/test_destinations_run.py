"""Destinations end to end: `trailwarden run` as a process, Kafka in, receivers out.

Real broker, SQLite or PostgreSQL, HTTP receivers and SNS topics on a moto server
(read back through SQS queues subscribed to them). Each wave of records from
`alert_waves` opens three alerts: one medium (action-not-allowed), two high.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from fixtures_destinations import ALERTS_PER_WAVE, POLICY_FILE, HttpReceiver

from service.forwarders.outbox import delivery_id

pytestmark = pytest.mark.integration

TOKEN = "destinations-token"
SECRET = "destinations-hook-secret"
SECRET_ENV = "E2E_ONCALL_SECRET"

WaitUntil = Callable[..., Awaitable[Any]]


@pytest.fixture
def start_service(
    kafka_bootstrap: str,
    topic_factory: Callable[..., Awaitable[str]],
    run_process: Callable[..., Awaitable[Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Awaitable[tuple[dict[str, Any], Any]]]:
    """Write the destinations file, then start `run` on a fresh topic.

    Returns the settings (to start the same service again) and the process.
    """
    monkeypatch.setenv(SECRET_ENV, SECRET)

    async def start(
        destinations: list[dict[str, Any]], database_url: str
    ) -> tuple[dict[str, Any], Any]:
        path = tmp_path / "destinations.yaml"
        path.write_text(yaml.safe_dump({"destinations": destinations}))
        topic = await topic_factory()
        settings = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "kafka_topic": topic,
            "kafka_group_id": f"destinations-{uuid.uuid4().hex[:8]}",
            "kafka_session_timeout_seconds": 2,
            "database_url": database_url,
            "policy_file": POLICY_FILE,
            "destinations_file": path,
            "api_tokens": TOKEN,
        }
        return settings, await run_process(**settings)

    return start


def api(process: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{process.http_port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )


async def _get(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    """The JSON answer, or None while the service does not answer 200."""
    try:
        response = await client.get(path, params=params)
    except httpx.TransportError:
        return None
    return response.json() if response.status_code == 200 else None


async def alerts_oldest_first(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    page = await _get(client, "/alerts", limit=500)
    return [] if page is None else page["items"][::-1]


async def deliveries(
    client: httpx.AsyncClient, status: str | None = None, **params: Any
) -> list[dict[str, Any]] | None:
    """Deliveries oldest first (outbox order); None while the API is not up."""
    if status is not None:
        params["status"] = status
    page = await _get(client, "/deliveries", limit=500, **params)
    return None if page is None else page["items"][::-1]


async def settled(client: httpx.AsyncClient, expected: int) -> bool:
    """`expected` deliveries delivered and none pending."""
    pending = await deliveries(client, "pending")
    delivered = await deliveries(client, "delivered")
    return pending == [] and delivered is not None and len(delivered) == expected


async def metrics(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    return response.text


def _alert_ids(requests: list[Any]) -> list[str]:
    return [request.json()["id"] for request in requests]


def _slack_alert_id(body: dict[str, Any]) -> str:
    context = body["blocks"][-1]["elements"][0]["text"]
    return str(context.removeprefix("alert ").split(" ")[0])


async def test_run_destinations_each_receive_what_their_filter_admits(
    start_service: Callable[..., Awaitable[tuple[dict[str, Any], Any]]],
    produce: Callable[..., Awaitable[None]],
    http_receiver: Callable[[], HttpReceiver],
    sns_inbox: Callable[..., Any],
    aws_env: dict[str, str],
    alert_waves: Callable[..., list[bytes]],
    wait_until: WaitUntil,
    tmp_path: Path,
) -> None:
    """Two webhooks (signed JSON, Slack), a standard and a FIFO topic, a no-match."""
    receiver = http_receiver()
    receiver.start()
    topic, fifo = sns_inbox(), sns_inbox(fifo=True)
    endpoint = aws_env["AWS_ENDPOINT_URL"]
    fifo_detectors = {"high-risk-action", "action-not-allowed"}
    destinations = [
        {"name": "oncall", "type": "webhook", "url": receiver.url("oncall"),
         "secret_env": SECRET_ENV, "filter": {"min_severity": "high"}},
        {"name": "team-slack", "type": "webhook", "url": receiver.url("slack"),
         "format": "slack", "filter": {"detectors": ["action-not-allowed"]}},
        {"name": "nobody", "type": "webhook", "url": receiver.url("nobody"),
         "format": "slack", "filter": {"third_parties": ["nimbus-backup"]}},
        {"name": "security-topic", "type": "sns", "topic_arn": topic.topic_arn,
         "endpoint_url": endpoint, "filter": {"third_parties": ["acme-analytics"]}},
        {"name": "security-fifo", "type": "sns", "topic_arn": fifo.topic_arn,
         "endpoint_url": endpoint, "filter": {"detectors": sorted(fifo_detectors)}},
    ]  # fmt: skip
    db = f"sqlite:///{tmp_path / 'alerts.db'}"
    settings, process = await start_service(destinations, db)

    await produce(settings["kafka_topic"], alert_waves(range(2)))
    async with api(process) as client:
        await wait_until(lambda: settled(client, 4 + 2 + 6 + 4), 40)
        alerts = await alerts_oldest_first(client)
        outbox = await deliveries(client)
        nobody = await deliveries(client, destination="nobody")
        exported = await metrics(client)
    topic_envelopes = await wait_until(lambda: _at_least(topic, 6), 20)
    fifo_envelopes = await wait_until(lambda: _at_least(fifo, 4), 20)
    assert await process.stop() == 0, process.log()

    assert len(alerts) == 2 * ALERTS_PER_WAVE
    by_id = {alert["id"]: alert for alert in alerts}
    high = [alert["id"] for alert in alerts if alert["severity"] == "high"]
    oncall = receiver.requests("oncall")
    assert _alert_ids(oncall) == high
    assert all(request.signed_with(SECRET) for request in oncall)
    listed = {(d["destination"], d["alert_id"]): d["id"] for d in outbox or []}
    assert [r.headers["x-trailwarden-delivery"] for r in oncall] == [
        listed["oncall", alert_id] for alert_id in high
    ]
    assert listed["oncall", high[0]] == delivery_id("oncall", high[0])
    _assert_recurrences_say_so(oncall, alerts)

    slack = receiver.requests("slack")
    not_allowed = [a["id"] for a in alerts if a["detector"] == "action-not-allowed"]
    assert [_slack_alert_id(request.json()) for request in slack] == not_allowed
    assert all(request.json()["text"].startswith("[MEDIUM] ") for request in slack)
    assert receiver.requests("nobody") == []
    assert nobody == []

    assert sorted(_message_id(e) for e in topic_envelopes) == sorted(by_id)
    for envelope in topic_envelopes + fifo_envelopes:
        _assert_sns_envelope(envelope, by_id[_message_id(envelope)])
    assert [_message_id(e) for e in fifo_envelopes] == [
        a["id"] for a in alerts if a["detector"] in fifo_detectors
    ]
    assert 'destination_type="webhook",outcome="delivered"} 6.0' in exported
    assert 'destination_type="sns",outcome="delivered"} 10.0' in exported


async def _at_least(inbox: Any, count: int) -> list[dict[str, Any]] | None:
    envelopes: list[dict[str, Any]] = await inbox.collect()
    return envelopes if len(envelopes) >= count else None


def _message_id(envelope: dict[str, Any]) -> str:
    return str(orjson.loads(envelope["Message"])["id"])


def _assert_sns_envelope(envelope: dict[str, Any], alert: dict[str, Any]) -> None:
    subject = envelope["Subject"]
    assert len(subject) <= 100
    assert "\n" not in subject
    assert subject == f"[{alert['severity'].upper()}] {alert['title']}"[:99]
    attributes = {k: v["Value"] for k, v in envelope["MessageAttributes"].items()}
    assert attributes == {
        "severity": alert["severity"],
        "detector": alert["detector"],
        "third_party": alert["third_party"],
    }


def _assert_recurrences_say_so(
    requests: list[Any], alerts: list[dict[str, Any]]
) -> None:
    """A second-wave alert is a repeat and names the first-wave one it follows."""
    first_wave = {a["detector"]: a["id"] for a in alerts[:ALERTS_PER_WAVE]}
    for request in requests:
        body = request.json()
        if body["id"] in first_wave.values():
            continue
        assert body["repeat"] is True
        assert body["previous_alert_id"] == first_wave[body["detector"]]


async def test_run_receiver_down_service_killed_then_throttling_loses_nothing(
    start_service: Callable[..., Awaitable[tuple[dict[str, Any], Any]]],
    run_process: Callable[..., Awaitable[Any]],
    produce: Callable[..., Awaitable[None]],
    http_receiver: Callable[[], HttpReceiver],
    postgres_url: str,
    alert_waves: Callable[..., list[bytes]],
    wait_until: WaitUntil,
) -> None:
    """Refused, SIGKILL mid-backlog, restart, then 429 with Retry-After, then 200."""
    receiver = http_receiver()  # not started: connections are refused
    oncall = {
        "name": "oncall", "type": "webhook", "url": receiver.url("oncall"),
        "secret_env": SECRET_ENV,
        "retry": {"max_attempts": 1000, "initial_backoff_seconds": 1,
                  "max_backoff_seconds": 1},
    }  # fmt: skip
    settings, first = await start_service([oncall], postgres_url)
    topic = settings["kafka_topic"]

    await produce(topic, alert_waves(range(2)))
    async with api(first) as client:
        head = await wait_until(_HeadBetweenAttempts(client, 2 * ALERTS_PER_WAVE), 30)
    first.kill()
    await first.wait()
    await produce(topic, alert_waves([2]))
    second = await run_process(**settings)
    async with api(second) as client:
        # The new process takes the backlog over while the receiver is still down.
        await wait_until(lambda: _head_attempted(client, head, 9), 30)
        receiver.script("oncall", (429, {"Retry-After": "1"}))
        receiver.start()
        await wait_until(lambda: settled(client, 3 * ALERTS_PER_WAVE), 30)
        alerts = await alerts_oldest_first(client)
    assert await second.stop() == 0, second.log()

    requests = receiver.requests("oncall")
    ids = [alert["id"] for alert in alerts]
    assert len(ids) == 3 * ALERTS_PER_WAVE
    assert _alert_ids(requests) == [ids[0], *ids]  # the head again after its 429
    assert all(request.signed_with(SECRET) for request in requests)
    headers = [request.headers["x-trailwarden-delivery"] for request in requests]
    assert headers[0] == headers[1] == head["id"]
    assert len(set(headers)) == len(ids)
    retries = second.events("delivery.retrying")
    assert {"status": 429, "wait_seconds": 1.0} in [
        {"status": e.get("status"), "wait_seconds": e["wait_seconds"]} for e in retries
    ]


class _HeadBetweenAttempts:
    """The oldest pending delivery, once all `count` exist, it has failed twice,
    and it was seen unchanged on two polls with its next attempt still ahead.

    A SIGKILL then lands between attempts: no claim is left to lapse.
    """

    def __init__(self, client: httpx.AsyncClient, count: int) -> None:
        self._client = client
        self._count = count
        self._last: dict[str, Any] | None = None

    async def __call__(self) -> dict[str, Any] | None:
        pending = await deliveries(self._client, "pending")
        if not pending or len(pending) != self._count or pending[0]["attempts"] < 2:
            return None
        head, last = pending[0], self._last
        self._last = head
        ahead = datetime.fromisoformat(head["next_attempt_at"]) - datetime.now(UTC)
        if last != head or ahead < timedelta(seconds=0.3):
            return None
        return head


async def _head_attempted(
    client: httpx.AsyncClient, head: dict[str, Any], count: int
) -> bool:
    pending = await deliveries(client, "pending")
    if not pending or len(pending) != count:
        return False
    return pending[0]["id"] == head["id"] and pending[0]["attempts"] > head["attempts"]


async def test_run_failed_deliveries_retried_by_cli_and_api_updates_not_resent(
    start_service: Callable[..., Awaitable[tuple[dict[str, Any], Any]]],
    produce: Callable[..., Awaitable[None]],
    http_receiver: Callable[[], HttpReceiver],
    alert_waves: Callable[..., list[bytes]],
    wait_until: WaitUntil,
    tmp_path: Path,
) -> None:
    """500s exhaust two attempts; one retried by CLI, one by API; repeats not sent."""
    receiver = http_receiver()
    receiver.answer("flaky", 500)
    receiver.start()
    flaky = {
        "name": "flaky", "type": "webhook", "url": receiver.url("flaky"),
        "secret_env": SECRET_ENV,
        "retry": {"max_attempts": 2, "initial_backoff_seconds": 0.1,
                  "max_backoff_seconds": 0.2},
    }  # fmt: skip
    db = f"sqlite:///{tmp_path / 'alerts.db'}"
    settings, process = await start_service([flaky], db)

    await produce(settings["kafka_topic"], alert_waves([0]))
    async with api(process) as client:
        failed = await wait_until(lambda: _exactly(client, "failed", 3), 30)
        anonymous = await client.get("/deliveries", headers={"Authorization": ""})
        receiver.answer("flaky", 200)
        by_cli, by_api, left = failed
        cli = await _cli("deliveries", "retry", by_cli["id"], "--db", db)
        posted = await client.post(f"/deliveries/{by_api['id']}/retry")
        delivered = await wait_until(lambda: _exactly(client, "delivered", 2), 20)
        sent = len(receiver.requests("flaky"))

        await produce(settings["kafka_topic"], alert_waves([0], again=1))
        updated = await wait_until(lambda: _all_counts(client, 12), 20)
        outbox = await deliveries(client)
        backlog = 'trailwarden_deliveries_backlog{destination="flaky",status="failed"}'
        exported = await wait_until(lambda: _metric_is(client, backlog, 1.0), 25)
    assert await process.stop() == 0, process.log()

    assert all(d["attempts"] == 2 and "HTTP 500" in d["last_error"] for d in failed)
    assert anonymous.status_code == 401
    assert cli == (0, f"retrying {by_cli['id']}")
    assert posted.status_code == 202
    assert [d["id"] for d in delivered] == [by_cli["id"], by_api["id"]]
    assert sent == 3 * 2 + 2
    assert len(updated) == ALERTS_PER_WAVE
    assert [(d["id"], d["status"]) for d in outbox or []] == [
        (by_cli["id"], "delivered"),
        (by_api["id"], "delivered"),
        (left["id"], "failed"),
    ]
    assert len(receiver.requests("flaky")) == sent
    assert 'destination_type="webhook",outcome="failed"} 3.0' in exported


async def _exactly(
    client: httpx.AsyncClient, status: str, count: int
) -> list[dict[str, Any]] | None:
    found = await deliveries(client, status)
    return found if found is not None and len(found) == count else None


async def _all_counts(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    alerts = await alerts_oldest_first(client)
    return alerts if alerts and all(a["count"] == count for a in alerts) else []


async def _metric_is(client: httpx.AsyncClient, series: str, value: float) -> str:
    text = await metrics(client)
    return text if f"{series} {value}" in text else ""


async def _cli(*args: str) -> tuple[int, str]:
    """`python -m service ARGS`: exit status and stdout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, output.decode().strip()


async def test_run_file_destination_named_like_a_webhook_url_refused(
    run_process: Callable[..., Awaitable[Any]], tmp_path: Path
) -> None:
    """TRAILWARDEN_WEBHOOK_URLS become webhook-1, ...; the file may not take those."""
    path = tmp_path / "destinations.yaml"
    clash = {"name": "webhook-1", "type": "webhook", "url": "http://127.0.0.1:9/h"}
    path.write_text(yaml.safe_dump({"destinations": [{**clash, "format": "slack"}]}))

    process = await run_process(
        database_url=f"sqlite:///{tmp_path / 'alerts.db'}",
        destinations_file=path,
        webhook_urls="http://127.0.0.1:9/other",
        webhook_secret=SECRET,
    )

    assert await process.wait(30) != 0
    assert "'webhook-1' is reserved for TRAILWARDEN_WEBHOOK_URLS" in process.log()
    assert SECRET not in process.log()
