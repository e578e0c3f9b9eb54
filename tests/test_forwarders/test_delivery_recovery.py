"""End to end on the SQL outbox: receiver down, 503, 429, 200; restarts; retries."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from service.alerts import AlertChange
from service.api import create_app
from service.api import deliveries as deliveries_api
from service.forwarders.destinations import Retry, WebhookDestination
from service.forwarders.dispatcher import Dispatcher
from service.forwarders.outbox import outbox_rows
from service.forwarders.outbox_sql import SqlDeliveryOutbox, open_outbox
from service.store import open_store

pytestmark = pytest.mark.integration

FAST = Retry(max_attempts=50, initial_backoff_seconds=0.05, max_backoff_seconds=0.2)


class Running:
    """A dispatcher and its outbox on the test's database, as one service would hold."""

    def __init__(self, url: str, destination: WebhookDestination) -> None:
        self.outbox: SqlDeliveryOutbox = open_outbox(url)
        self.dispatcher = Dispatcher(
            self.outbox, [destination], poll_interval=0.05, backlog_interval=0.1
        )
        self.task = asyncio.create_task(self.dispatcher.run())

    async def stop(self) -> None:
        await self.dispatcher.close(grace=5)
        await self.task
        await self.outbox.close()


@pytest.fixture
async def service(store_url: str) -> AsyncIterator[Callable[..., Running]]:
    store = open_store(store_url)
    await store.start()  # migrates, the deliveries table included
    await store.close()
    setup = open_outbox(store_url)
    await setup.create_table()
    await setup.close()
    running: list[Running] = []

    def start(destination: WebhookDestination) -> Running:
        service = Running(store_url, destination)
        running.append(service)
        return service

    yield start
    for service in running:
        if not service.task.done():
            await service.stop()


async def _add_alerts(url: str, make_alert, numbers, destination) -> None:
    outbox = open_outbox(url)
    try:
        changes = [AlertChange(make_alert(n), created=True) for n in numbers]
        await outbox.add(outbox_rows(changes, [destination]))
    finally:
        await outbox.close()


async def test_receiver_down_then_throttling_then_up_loses_nothing_in_order(
    store_url, service, webhook_receiver, late_server, make_alert, wait_until
) -> None:
    server = late_server(webhook_receiver.handle)
    hook = WebhookDestination(
        name="hook",
        type="webhook",
        url=server.url,
        secret=webhook_receiver.secret,
        retry=FAST,
    )
    await _add_alerts(store_url, make_alert, range(5), hook)

    # Down: connection refused, the head retries and nothing overtakes it.
    first = service(hook)
    await wait_until(lambda: _head_attempts(first.outbox, 3), 20)
    await first.stop()

    # Up again, throttling; meanwhile more alerts arrive; a new dispatcher takes over.
    webhook_receiver.responses.extend([(503, {}), (429, {"Retry-After": "1"})])
    server.start()
    await _add_alerts(store_url, make_alert, range(5, 8), hook)
    with capture_logs() as logs:
        second = service(hook)
        await wait_until(lambda: _all_delivered(second.outbox, 8), 30)
        await second.stop()

    received = webhook_receiver.snapshot()
    assert all(request.signature_valid for request in received)
    ids_in_order = []
    for request in received:
        alert = orjson.loads(request.body)["id"]
        if not ids_in_order or ids_in_order[-1] != alert:
            ids_in_order.append(alert)
    assert ids_in_order == [f"alert-{n:04d}" for n in range(8)]
    head_ids = {
        r.headers["x-trailwarden-delivery"]
        for r in received
        if orjson.loads(r.body)["id"] == "alert-0000"
    }
    assert len(head_ids) == 1
    waits = [e["wait_seconds"] for e in logs if e["event"] == "delivery.retrying"]
    assert 1.0 in waits  # Retry-After, not the 0.05 s backoff


async def test_failed_delivery_listed_and_retried_through_api(
    store_url, service, webhook_receiver, make_alert, wait_until, tmp_path
) -> None:
    hook = WebhookDestination(
        name="hook",
        type="webhook",
        url=webhook_receiver.url,
        secret=webhook_receiver.secret,
        retry=Retry(max_attempts=2, initial_backoff_seconds=0.01),
    )
    await _add_alerts(store_url, make_alert, range(2), hook)
    webhook_receiver.responses.extend([(500, {}), (500, {})])
    running = service(hook)
    await wait_until(lambda: _all_delivered(running.outbox, 1), 20)

    store = open_store(store_url)
    await store.start()
    app = create_app(store, api_tokens=["t0ken"])
    deliveries_api.install(app, running.outbox)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": "Bearer t0ken"}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=headers
        ) as client:
            failed = await client.get("/deliveries", params={"status": "failed"})
            (item,) = failed.json()["items"]
            retried = await client.post(f"/deliveries/{item['id']}/retry")
            await wait_until(lambda: _all_delivered(running.outbox, 2), 20)
            again = await client.post(f"/deliveries/{item['id']}/retry")
            unknown = await client.post(f"/deliveries/{uuid.UUID(int=0)}/retry")
            not_an_id = await client.post("/deliveries/%00/retry")
            nul_name = await client.get("/deliveries", params={"destination": "\x00"})
            bad = await client.get("/deliveries", params={"status": "lost"})
            bad_cursor = await client.get("/deliveries", params={"cursor": "x!"})
            anonymous = await client.get("/deliveries", headers={"Authorization": ""})
    finally:
        await store.close()

    assert item["alert_id"] == "alert-0000"
    assert item["attempts"] == 2
    assert "HTTP 500" in item["last_error"]
    assert retried.status_code == 202
    assert again.status_code == 409
    assert unknown.status_code == 404
    assert not_an_id.status_code == 400
    assert nul_name.status_code == 400
    assert bad.status_code == 400
    assert "status" in bad.json()["detail"]
    assert bad_cursor.status_code == 400
    assert anonymous.status_code == 401


async def _head_attempts(outbox: SqlDeliveryOutbox, attempts: int) -> bool:
    page = await outbox.list("pending", 500, None)
    return bool(page.items) and page.items[-1].attempts >= attempts


async def _all_delivered(outbox: SqlDeliveryOutbox, count: int) -> bool:
    page = await outbox.list("delivered", 500, None)
    return len(page.items) >= count
