"""Sends one outbox delivery to a webhook: signed JSON, or a Slack-compatible message.

The delivery id header is the outbox row id, so every retry carries the same one.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from service.errors import DeliveryError
from service.forwarders.destinations import WebhookDestination
from service.forwarders.outbox import Delivery
from service.forwarders.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    parse_retry_after,
    sign,
)

# 408 and 425 are "try again" by definition; 429 and 5xx are the receiver's load.
_RETRIABLE_STATUSES = frozenset({408, 425, 429})
_SLACK_FIELD_CHARS = 1900
_SLACK_TEXT_CHARS = 2900
_SLACK_FIELDS = (
    ("Detector", "detector"),
    ("Severity", "severity"),
    ("Third party", "third_party"),
    ("Account", "account_id"),
    ("Actor", "actor"),
    ("Source IP", "source_ip"),
    ("Region", "region"),
    ("Action", "action"),
    ("Event time", "event_time"),
    ("Occurrences", "count"),
)


class WebhookSender:
    """POSTs deliveries to one destination; raises DeliveryError on failure."""

    def __init__(
        self,
        destination: WebhookDestination,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.destination = destination
        self._secret = (
            destination.secret.get_secret_value() if destination.secret else None
        )
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(destination.timeout_seconds), follow_redirects=False
        )

    def body(self, delivery: Delivery) -> bytes:
        """The request body for `delivery` in the destination's format."""
        if self.destination.format == "slack":
            return orjson.dumps(slack_message(delivery.payload))
        return orjson.dumps(delivery.payload)

    async def send(self, delivery: Delivery) -> None:
        """One attempt; DeliveryError says whether another may succeed."""
        body = self.body(delivery)
        # A fresh timestamp per attempt keeps retries inside receivers' replay window.
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery.id}
        if self._secret is not None:
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)

        origin = self.destination.origin
        try:
            response = await self._client.post(
                self.destination.url, content=body, headers=headers
            )
        except httpx.TransportError as exc:
            raise DeliveryError(
                f"{origin}: {type(exc).__name__}", retriable=True
            ) from exc

        _raise_for_status(origin, response)

    async def close(self) -> None:
        if self._own_client:
            await self._client.aclose()


def slack_message(payload: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` for notifications, `blocks` to read."""
    severity = str(payload.get("severity", "")).upper()
    title = str(payload.get("title", "alert"))
    repeat = " (repeat)" if payload.get("repeat") else ""
    text = f"[{severity}] {title}{repeat}"

    fields = [
        {"type": "mrkdwn", "text": _clip(f"*{label}*\n{_escape(str(payload[key]))}")}
        for label, key in _SLACK_FIELDS
        if payload.get(key) is not None
    ]
    context = f"alert {payload.get('id', '?')}"
    if payload.get("truncated"):
        context += " (details truncated)"
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _clip(f"*{_escape(text)}*", _SLACK_TEXT_CHARS),
            },
        },
        {"type": "section", "fields": fields},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(context)}]},
    ]
    return {"text": _clip(text, _SLACK_TEXT_CHARS), "blocks": blocks}


def _escape(text: str) -> str:
    # Slack's mrkdwn control characters: https://api.slack.com/reference/surfaces/formatting
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int = _SLACK_FIELD_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _raise_for_status(origin: str, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return

    retriable = status in _RETRIABLE_STATUSES or status >= 500
    retry_after = None
    if status in (429, 503):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
    raise DeliveryError(
        f"{origin} answered HTTP {status}",
        retriable=retriable,
        status=status,
        retry_after=retry_after,
    )
