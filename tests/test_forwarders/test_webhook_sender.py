"""WebhookSender against the real receiver: signed JSON, stable id, Slack format."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from service.alerts import AlertChange
from service.errors import DeliveryError
from service.forwarders.destinations import WebhookDestination
from service.forwarders.outbox import MemoryOutbox, outbox_rows
from service.forwarders.webhook_sender import WebhookSender, slack_message

pytestmark = pytest.mark.integration


async def _delivery(make_alert, destination: WebhookDestination, **overrides):
    outbox = MemoryOutbox()
    change = AlertChange(make_alert(1, **overrides), created=True)
    await outbox.add(outbox_rows([change], [destination]))
    (delivery,) = (await outbox.list(None, 1, None)).items
    return delivery


@pytest.fixture
async def sender_for(webhook_receiver) -> AsyncIterator:
    senders: list[WebhookSender] = []

    def make(**options) -> WebhookSender:
        destination = WebhookDestination(
            name="hook",
            type="webhook",
            url=webhook_receiver.url,
            secret=webhook_receiver.secret,
            **options,
        )
        sender = WebhookSender(destination)
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        await sender.close()


async def test_send_json_signed_with_delivery_id(
    sender_for, webhook_receiver, make_alert
) -> None:
    sender = sender_for()
    delivery = await _delivery(make_alert, sender.destination)

    await sender.send(delivery)

    (received,) = webhook_receiver.snapshot()
    assert received.signature_valid
    assert received.headers["x-trailwarden-delivery"] == delivery.id
    body = orjson.loads(received.body)
    assert body["id"] == "alert-0001"
    assert body["repeat"] is False


@pytest.mark.parametrize(
    ("status", "headers", "retriable", "retry_after"),
    [
        (429, {"Retry-After": "7"}, True, 7.0),
        (503, {}, True, None),
        (408, {}, True, None),
        (400, {}, False, None),
        (410, {}, False, None),
    ],
)
async def test_send_error_status_raises_with_retriability(
    sender_for, webhook_receiver, make_alert, status, headers, retriable, retry_after
) -> None:
    sender = sender_for()
    delivery = await _delivery(make_alert, sender.destination)
    webhook_receiver.responses.append((status, headers))

    with pytest.raises(DeliveryError) as caught:
        await sender.send(delivery)

    assert caught.value.retriable is retriable
    assert caught.value.retry_after == retry_after
    assert caught.value.status == status


async def test_send_connection_refused_is_retriable(make_alert, free_port) -> None:
    destination = WebhookDestination(
        name="hook",
        type="webhook",
        url=f"http://127.0.0.1:{free_port()}/hook",
        secret="k",
    )
    sender = WebhookSender(destination)
    delivery = await _delivery(make_alert, destination)

    try:
        with pytest.raises(DeliveryError) as caught:
            await sender.send(delivery)
    finally:
        await sender.close()

    assert caught.value.retriable


async def test_send_slack_format_posts_text_and_blocks(
    sender_for, webhook_receiver, make_alert
) -> None:
    sender = sender_for(format="slack")
    delivery = await _delivery(make_alert, sender.destination, title="<script> & co")

    await sender.send(delivery)

    body = orjson.loads(webhook_receiver.snapshot()[0].body)
    assert body["text"] == "[HIGH] <script> & co"
    assert body["blocks"][0]["text"]["text"] == "*[HIGH] &lt;script&gt; &amp; co*"
    fields = [field["text"] for field in body["blocks"][1]["fields"]]
    assert "*Third party*\nacme-analytics" in fields


def test_slack_message_marks_repeat_and_truncation() -> None:
    message = slack_message(
        {"severity": "low", "title": "t", "repeat": True, "truncated": True, "id": "a"}
    )

    assert message["text"] == "[LOW] t (repeat)"
    assert "truncated" in message["blocks"][2]["elements"][0]["text"]
