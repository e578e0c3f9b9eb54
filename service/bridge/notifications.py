"""Parse the body of an SQS message into the S3 objects it announces.

Four forms arrive: S3 event notifications, CloudTrail's own SNS message
(`s3Bucket`, `s3ObjectKey`), S3 "Object Created" events through EventBridge, and
either of the first two wrapped in an SNS envelope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote_plus

import orjson

__all__ = ["LogObject", "Notification", "NotificationError", "parse_notification"]

NotificationForm = Literal[
    "s3_event", "cloudtrail_sns", "eventbridge", "s3_test_event", "ignored"
]
# SNS wraps the other forms once; a wrapper inside a wrapper is not a real message.
_MAX_DEPTH = 2


class NotificationError(ValueError):
    """An SQS message body that is none of the notification forms."""


@dataclass(frozen=True, slots=True)
class LogObject:
    """One S3 object; `alternate_key` is the key as sent, when decoding changed it.

    S3 URL-encodes keys in its notifications; the raw key is kept so a producer
    that did not encode (some EventBridge rules, hand-made messages) still works.
    """

    bucket: str
    key: str
    alternate_key: str | None = None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class Notification:
    """The objects an SQS message names, and which form it came in."""

    form: NotificationForm
    objects: list[LogObject] = field(default_factory=list)
    via_sns: bool = False


def parse_notification(body: str | bytes) -> Notification:
    """Decode one SQS message body. Raises NotificationError when it is none of them.

    A notification about anything but a created object (a delete, a restore) is
    the form "ignored" with no objects; so is an S3 test event ("s3_test_event").
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NotificationError(f"body is not JSON ({len(body)} bytes)") from exc
    return _parse(value, depth=0)


def _parse(value: object, depth: int) -> Notification:
    if not isinstance(value, dict):
        raise NotificationError(f"body is a JSON {type(value).__name__}, not an object")

    if value.get("Type") == "Notification" and "Message" in value:
        return _sns(value, depth)
    if value.get("Event") == "s3:TestEvent":
        return Notification("s3_test_event")
    if "Records" in value:
        return _s3_event(value["Records"])
    if "s3Bucket" in value:
        return _cloudtrail_sns(value)
    if "detail-type" in value:
        return _eventbridge(value)
    raise NotificationError(
        "JSON object is not an S3, SNS, CloudTrail or EventBridge notification"
    )


def _sns(envelope: dict[str, Any], depth: int) -> Notification:
    message = envelope["Message"]
    if depth >= _MAX_DEPTH or not isinstance(message, str):
        raise NotificationError("SNS envelope whose Message is not a JSON string")
    try:
        inner = orjson.loads(message)
    except orjson.JSONDecodeError as exc:
        raise NotificationError("SNS Message is not JSON") from exc

    parsed = _parse(inner, depth + 1)
    return Notification(parsed.form, parsed.objects, via_sns=True)


def _s3_event(records: object) -> Notification:
    if not isinstance(records, list):
        raise NotificationError("Records is not a list")

    objects: list[LogObject] = []
    for index, record in enumerate(records):
        s3 = record.get("s3") if isinstance(record, dict) else None
        if not isinstance(s3, dict):
            raise NotificationError(f"Records[{index}] has no s3 object")
        event_name = record.get("eventName")
        if not isinstance(event_name, str) or not event_name.startswith(
            "ObjectCreated"
        ):
            continue
        bucket = _text(s3.get("bucket"), "name")
        key = _text(s3.get("object"), "key")
        if bucket is None or key is None:
            raise NotificationError(f"Records[{index}] lacks bucket.name or object.key")
        objects.append(_encoded(bucket, key))

    return Notification("s3_event" if objects else "ignored", objects)


def _cloudtrail_sns(message: dict[str, Any]) -> Notification:
    bucket = message.get("s3Bucket")
    keys = message.get("s3ObjectKey")
    if isinstance(keys, str):
        keys = [keys]
    if (
        not isinstance(bucket, str)
        or not isinstance(keys, list)
        or not all(isinstance(key, str) for key in keys)
    ):
        raise NotificationError("CloudTrail message lacks s3Bucket or s3ObjectKey")
    # CloudTrail sends keys as they are, not URL-encoded.
    return Notification("cloudtrail_sns", [LogObject(bucket, key) for key in keys])


def _eventbridge(event: dict[str, Any]) -> Notification:
    if event.get("detail-type") != "Object Created":
        return Notification("ignored")
    detail = event.get("detail")
    bucket = _text(detail.get("bucket"), "name") if isinstance(detail, dict) else None
    key = _text(detail.get("object"), "key") if isinstance(detail, dict) else None
    if bucket is None or key is None:
        raise NotificationError(
            "EventBridge Object Created event lacks detail.bucket.name or "
            "detail.object.key"
        )
    return Notification("eventbridge", [_encoded(bucket, key)])


def _encoded(bucket: str, key: str) -> LogObject:
    decoded = unquote_plus(key)
    return LogObject(bucket, decoded, key if decoded != key else None)


def _text(value: object, name: str) -> str | None:
    found = value.get(name) if isinstance(value, dict) else None
    return found if isinstance(found, str) and found else None
