"""SQS message bodies in every form the S3 notifications come in."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.bridge.notifications import (
    LogObject,
    NotificationError,
    parse_notification,
)
from service.bridge.s3_files import account_from_key, key_kind, parse_key

_FOLDER = "AWSLogs/o-exampleorgid/111122223333/CloudTrail/us-east-1/2024/05/01"
KEY = f"trail logs/{_FOLDER}/x+y.json.gz"
ENCODED = f"trail+logs/{_FOLDER}/x%2By.json.gz"


def _s3_event(key: str = ENCODED, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": name,
                "s3": {"bucket": {"name": "trail"}, "object": {"key": key}},
            }
        ]
    }


def _sns(message: dict[str, Any]) -> str:
    return json.dumps({"Type": "Notification", "Message": json.dumps(message)})


def test_parse_notification_s3_event_url_decodes_key() -> None:
    notification = parse_notification(json.dumps(_s3_event()))

    assert notification.form == "s3_event"
    assert notification.objects == [LogObject("trail", KEY, ENCODED)]


def test_parse_notification_s3_event_in_sns_is_unwrapped() -> None:
    notification = parse_notification(_sns(_s3_event()))

    assert notification.via_sns
    assert notification.objects[0].key == KEY


@pytest.mark.parametrize("wrap", [False, True])
def test_parse_notification_cloudtrail_message_keeps_keys_literal(wrap: bool) -> None:
    message = {"s3Bucket": "trail", "s3ObjectKey": [KEY, KEY + "2"]}
    body = _sns(message) if wrap else json.dumps(message)

    notification = parse_notification(body)

    assert notification.form == "cloudtrail_sns"
    assert [obj.key for obj in notification.objects] == [KEY, KEY + "2"]
    assert notification.objects[0].alternate_key is None


def test_parse_notification_eventbridge_object_created_names_object() -> None:
    event = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": "trail"}, "object": {"key": ENCODED}},
    }

    notification = parse_notification(json.dumps(event))

    assert notification.form == "eventbridge"
    assert notification.objects == [LogObject("trail", KEY, ENCODED)]


@pytest.mark.parametrize(
    ("body", "form"),
    [
        (
            {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "t"},
            "s3_test_event",
        ),
        (_s3_event(name="ObjectRemoved:Delete"), "ignored"),
        ({"detail-type": "Object Deleted", "detail": {}}, "ignored"),
    ],
)
def test_parse_notification_no_created_object_names_nothing(
    body: dict[str, Any], form: str
) -> None:
    notification = parse_notification(json.dumps(body))

    assert notification.form == form
    assert notification.objects == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON list"),
        ('{"hello": 1}', "is not an S3, SNS"),
        ('{"Records": {}}', "Records is not a list"),
        ('{"Records": [{"eventName": "ObjectCreated:Put"}]}', "has no s3"),
        ('{"s3Bucket": "b"}', "lacks s3Bucket or s3ObjectKey"),
        ('{"detail-type": "Object Created", "detail": {}}', "lacks detail"),
        ('{"Type": "Notification", "Message": "nope"}', "SNS Message is not JSON"),
        ('{"Type": "Notification", "Message": 3}', "not a JSON string"),
    ],
)
def test_parse_notification_malformed_raises_naming_problem(
    body: str, message: str
) -> None:
    with pytest.raises(NotificationError, match=message):
        parse_notification(body)


def test_parse_notification_sns_nested_too_deeply_raises() -> None:
    body = _sns(json.loads(_sns(json.loads(_sns(_s3_event())))))

    with pytest.raises(NotificationError):
        parse_notification(body)


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        (KEY, "log"),
        (
            "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/05/01/d.json.gz",
            "digest",
        ),
        (
            "x/111122223333_CloudTrail-Digest_us-east-1_t_20240501T0000Z.json.gz",
            "digest",
        ),
        (
            "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2024/05/01/i.json.gz",
            "insight",
        ),
    ],
)
def test_key_kind_by_folder_and_name(key: str, kind: str) -> None:
    assert key_kind(key) == kind


def test_parse_key_organisation_trail_layout() -> None:
    layout = parse_key(KEY)

    assert layout is not None
    assert (layout.org, layout.account, layout.region) == (
        "o-exampleorgid",
        "111122223333",
        "us-east-1",
    )
    assert layout.day.isoformat() == "2024-05-01"


@pytest.mark.parametrize(
    ("key", "account"),
    [
        (
            "AWSLogs/444455556666/CloudTrail/eu-west-1/2024/05/01/f.json.gz",
            "444455556666",
        ),
        ("AWSLogs/444455556666/CloudTrail/eu-west-1/2024/13/01/f.json.gz", None),
        ("elsewhere/f.json.gz", None),
    ],
)
def test_account_from_key_layout_or_none(key: str, account: str | None) -> None:
    assert account_from_key(key) == account
