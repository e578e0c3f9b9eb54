"""Publishes one outbox delivery to an SNS topic, within SNS's limits.

The subject is one ASCII line under 100 characters; the message stays under
256 KB by trimming `details` progressively (marked `"truncated": true`), never
by failing. Attributes severity, detector and third_party feed filter policies.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from typing import Any

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from service.errors import DeliveryError
from service.forwarders.destinations import SnsDestination
from service.forwarders.outbox import Delivery

MAX_MESSAGE_BYTES = 256 * 1024
"""SNS's limit for the message and its attributes together."""
MAX_SUBJECT_CHARS = 99
"""SNS wants subjects "less than 100 characters long"."""

_MARGIN_BYTES = 1024
_DETAIL_BUDGETS = (131072, 32768, 8192, 2048, 512)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SPACES = re.compile(r"\s+")
_GROUP_ID_CHARS = re.compile(r"[^A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]")
_RETRIABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "Throttled",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "KMSThrottling",
        "RequestTimeout",
    }
)


class SnsSender:
    """Publishes deliveries to one topic with boto3, in a worker thread."""

    def __init__(self, destination: SnsDestination, *, client: Any = None) -> None:
        self.destination = destination
        self._client = client or boto3.session.Session().client(
            "sns",
            region_name=destination.topic_region,
            endpoint_url=destination.endpoint_url,
            config=Config(
                connect_timeout=destination.timeout_seconds,
                read_timeout=destination.timeout_seconds,
                # The dispatcher retries with backoff; botocore should not as well.
                retries={"total_max_attempts": 1},
            ),
        )

    def request(self, delivery: Delivery) -> dict[str, Any]:
        """The keyword arguments of the Publish call for `delivery`."""
        attributes = message_attributes(delivery.payload)
        budget = MAX_MESSAGE_BYTES - _attributes_size(attributes) - _MARGIN_BYTES
        request: dict[str, Any] = {
            "TopicArn": self.destination.topic_arn,
            "Subject": sns_subject(delivery.payload),
            "Message": fit_message(delivery.payload, budget).decode("utf-8"),
            "MessageAttributes": attributes,
        }
        if self.destination.fifo:
            request["MessageGroupId"] = message_group(delivery.payload)
            request["MessageDeduplicationId"] = delivery.id
        return request

    async def send(self, delivery: Delivery) -> None:
        """One Publish; DeliveryError says whether another may succeed."""
        request = self.request(delivery)
        try:
            await asyncio.to_thread(self._client.publish, **request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "unknown"))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            retriable = code in _RETRIABLE_CODES or (status or 0) >= 500
            raise DeliveryError(
                f"SNS {self.destination.name}: {code}",
                retriable=retriable,
                status=status,
            ) from exc
        except BotoCoreError as exc:
            raise DeliveryError(
                f"SNS {self.destination.name}: {type(exc).__name__}", retriable=True
            ) from exc

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)


def sns_subject(payload: dict[str, Any]) -> str:
    """`[SEVERITY] title` as one printable ASCII line of at most 99 characters."""
    text = f"[{str(payload.get('severity', '')).upper()}] {payload.get('title', '')}"
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()
    if len(text) > MAX_SUBJECT_CHARS:
        text = text[: MAX_SUBJECT_CHARS - 3].rstrip() + "..."
    return text or "Trailwarden alert"


def message_attributes(payload: dict[str, Any]) -> dict[str, dict[str, str]]:
    """String attributes for subscription filter policies; absent ones left out."""
    attributes = {}
    for name in ("severity", "detector", "third_party"):
        value = payload.get(name)
        if value:
            attributes[name] = {"DataType": "String", "StringValue": str(value)[:256]}
    return attributes


def message_group(payload: dict[str, Any]) -> str:
    """The FIFO message group: the third party, else the detector (order within it)."""
    group = str(payload.get("third_party") or payload.get("detector") or "trailwarden")
    return _GROUP_ID_CHARS.sub("_", group)[:128]


def fit_message(payload: dict[str, Any], budget: int) -> bytes:
    """`payload` as JSON of at most `budget` bytes, trimming `details` first."""
    body = orjson.dumps(payload)
    if len(body) <= budget:
        return body

    details = payload.get("details", {})
    for limit in _DETAIL_BUDGETS:
        trimmed = {**payload, "details": _shrink(details, limit), "truncated": True}
        body = orjson.dumps(trimmed)
        if len(body) <= budget:
            return body

    # Still too big: the rest of the alert is what is large; keep its identity.
    essentials = {
        key: _shrink(payload.get(key), 512)
        for key in ("id", "detector", "severity", "title", "third_party", "account_id")
    }
    return orjson.dumps({**essentials, "details": {}, "truncated": True})


def _shrink(value: Any, limit: int) -> Any:
    """`value` cut so its JSON is about `limit` bytes at most, keeping the front."""
    if isinstance(value, str):
        data = value.encode("utf-8")
        if len(data) <= limit:
            return value
        return data[: max(0, limit - 5)].decode("utf-8", "ignore") + "..."
    if isinstance(value, list | tuple):
        items: list[Any] = []
        size = 2
        for item in value:
            small = _shrink(item, limit - size - 1)
            size += len(orjson.dumps(small, default=str)) + 1
            if size > limit:
                break
            items.append(small)
        return items
    if isinstance(value, dict):
        kept: dict[str, Any] = {}
        size = 2
        for key, item in value.items():
            room = limit - size - len(orjson.dumps(str(key))) - 2
            if room < 8:
                break
            small = _shrink(item, room)
            size += len(orjson.dumps({str(key): small}, default=str))
            if size > limit:
                break
            kept[str(key)] = small
        return kept
    return value


def _attributes_size(attributes: dict[str, dict[str, str]]) -> int:
    return sum(
        len(name) + len(value["DataType"]) + len(value["StringValue"].encode())
        for name, value in attributes.items()
    )
