"""Tests for CloudTrailRecord parsing: times, identities, source addresses."""

from __future__ import annotations

import copy
import ipaddress
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.records import (
    RecordError,
    parse_event_time,
    parse_source_addresses,
    record_from_dict,
)

DATA = Path(__file__).parent.parent / "data" / "envelopes"


def load_json(name: str) -> Any:
    return json.loads((DATA / name).read_bytes())


def load_lines(name: str) -> list[Any]:
    return [json.loads(line) for line in (DATA / name).read_bytes().splitlines()]


def stratus_record() -> dict[str, Any]:
    record: dict[str, Any] = load_json("stratus_ec2_share_ebs_snapshot.json")[0]
    return record


def panther_event(rule_id: str) -> dict[str, Any]:
    for line in load_lines("panther_rule_tests.jsonl"):
        if line["rule_id"] == rule_id:
            event: dict[str, Any] = line["event"]
            return event
    raise LookupError(rule_id)


def lookup_event(index: int) -> dict[str, Any]:
    item = load_lines("plaso_lookup_events.jsonl")[index]
    record: dict[str, Any] = json.loads(item["CloudTrailEvent"])
    return record


# Event time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (
            "2023-05-26T20:14:51.123Z",
            datetime(2023, 5, 26, 20, 14, 51, 123000, tzinfo=UTC),
        ),
        (
            "2024-06-03 15:23:22.000000000",
            datetime(2024, 6, 3, 15, 23, 22, tzinfo=UTC),
        ),
        (
            "2023-05-26T20:14:51.123456789Z",
            datetime(2023, 5, 26, 20, 14, 51, 123456, tzinfo=UTC),
        ),
        ("2023-05-26 20:14:51", datetime(2023, 5, 26, 20, 14, 51, tzinfo=UTC)),
        ("2020-11-05 21:21:46Z", datetime(2020, 11, 5, 21, 21, 46, tzinfo=UTC)),
        ("2022-02-08 09:23:37+11:00", datetime(2022, 2, 7, 22, 23, 37, tzinfo=UTC)),
        ("2024-05-01T12:00:00-0500", datetime(2024, 5, 1, 17, tzinfo=UTC)),
        (" 2024-05-01T12:00:00Z ", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2020-09-14T00:44:23.000Z", datetime(2020, 9, 14, 0, 44, 23, tzinfo=UTC)),
    ],
)
def test_parse_event_time_text_forms_are_utc(text: str, expected: datetime) -> None:
    parsed = parse_event_time(text)

    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (1589999999, datetime(2020, 5, 20, 18, 39, 59, tzinfo=UTC)),
        (1589999999.5, datetime(2020, 5, 20, 18, 39, 59, 500000, tzinfo=UTC)),
        (1589999999123, datetime(2020, 5, 20, 18, 39, 59, 123000, tzinfo=UTC)),
    ],
)
def test_parse_event_time_epoch_numbers_are_utc(
    number: float, expected: datetime
) -> None:
    parsed = parse_event_time(number)

    assert parsed == expected
    assert parsed is not None
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "redacted",
        "...",
        "eventTime",
        "ThisIsAWrongEventTime",
        "2025-10-21TT00:52:27Z",
        "",
        None,
        True,
        float("nan"),
        float("inf"),
        10**30,
        {"time": "2024-05-01T12:00:00Z"},
    ],
)
def test_parse_event_time_garbage_is_none(value: object) -> None:
    assert parse_event_time(value) is None


def test_record_from_dict_panther_nanosecond_time_is_parsed() -> None:
    record = record_from_dict(panther_event("AWS.Console.Sign-In"))

    assert record.event_time == datetime(2024, 6, 3, 15, 23, 22, tzinfo=UTC)


def test_record_from_dict_panther_redacted_time_is_none() -> None:
    record = record_from_dict(panther_event("AWS.Root.Activity"))

    assert record.event_time is None
    assert record.event_name == "ExternalIdPDirectoryLogin"


def test_record_from_dict_missing_time_is_none() -> None:
    raw = stratus_record()
    del raw["eventTime"]

    record = record_from_dict(raw)

    assert record.event_time is None


def test_record_from_dict_logstash_timestamp_stands_in_for_event_time() -> None:
    """OTRF's Logstash export has no eventTime, only @timestamp."""
    raw = load_lines("otrf_logstash.jsonl")[0]

    record = record_from_dict(raw)

    assert "eventTime" not in raw
    assert record.event_time == datetime(2020, 9, 14, 0, 44, 23, tzinfo=UTC)


def test_record_from_dict_unreadable_event_time_ignores_timestamp() -> None:
    raw = {**load_lines("otrf_logstash.jsonl")[0], "eventTime": "redacted"}

    record = record_from_dict(raw)

    assert record.event_time is None


# Identity


def test_record_from_dict_identity_fields_are_read() -> None:
    record = record_from_dict(lookup_event(0))

    assert record.identity.type == "IAMUser"
    assert record.identity.user_name == "fakeusername"
    assert record.identity.account_id == "012345678901"
    assert record.identity.access_key_id == "0123456789ABCDEFGHIJ"
    assert record.action == "ec2:DescribeInstances"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (lambda: lookup_event(0), False),
        (lambda: load_lines("otrf_logstash.jsonl")[0], True),
        (lambda: stratus_record(), None),
    ],
    ids=["plaso-false", "otrf-true", "stratus-absent"],
)
def test_record_from_dict_mfa_authenticated_strings_become_bools(
    raw: Any, expected: bool | None
) -> None:
    record = record_from_dict(raw())

    assert record.identity.mfa_authenticated is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("TRUE", True), ("False", False), (True, True), ("yes", None), (1, None)],
)
def test_record_from_dict_mfa_authenticated_odd_values(
    value: object, expected: bool | None
) -> None:
    raw = copy.deepcopy(lookup_event(0))
    raw["userIdentity"]["sessionContext"]["attributes"]["mfaAuthenticated"] = value

    record = record_from_dict(raw)

    assert record.identity.mfa_authenticated is expected


@pytest.mark.parametrize("identity", [None, "IAMUser", ["a"], 42])
def test_record_from_dict_odd_user_identity_is_empty(identity: object) -> None:
    raw = {**stratus_record(), "userIdentity": identity}

    record = record_from_dict(raw)

    assert record.identity.type is None
    assert record.identity.arn is None
    assert record.account_id == raw["recipientAccountId"]


def test_record_from_dict_missing_user_identity_is_empty() -> None:
    record = record_from_dict(panther_event("AWS.Console.Sign-In"))

    assert record.identity.type is None


def test_record_from_dict_numeric_account_id_becomes_text() -> None:
    raw = copy.deepcopy(stratus_record())
    raw["userIdentity"]["accountId"] = 123456789012
    raw["recipientAccountId"] = None

    record = record_from_dict(raw)

    assert record.account_id == "123456789012"


# Source addresses


def test_record_from_dict_aws_internal_has_no_address() -> None:
    record = record_from_dict(
        panther_event("AWS.CloudTrail.IMDSCredentialExfiltration")
    )

    assert record.source_ip == "AWS Internal"
    assert record.source_addresses == ()


def test_record_from_dict_service_name_has_no_address() -> None:
    record = record_from_dict(lookup_event(1))

    assert record.source_ip == "ec2.amazonaws.com"
    assert record.source_addresses == ()


def test_record_from_dict_leading_zero_octets_are_read() -> None:
    """Stratus anonymises addresses with leading zeros, such as 035.249.1.07."""
    raw = {**stratus_record(), "sourceIPAddress": "035.249.253.07"}

    record = record_from_dict(raw)

    assert record.source_addresses == (ipaddress.ip_address("35.249.253.7"),)


@pytest.mark.parametrize(
    ("source_ip", "expected"),
    [
        ("203.0.113.9", ("203.0.113.9",)),
        ("2001:db8:1234::5", ("2001:db8:1234::5",)),
        ("81.2.69.142, 192.168.10.10", ("81.2.69.142", "192.168.10.10")),
        ("2001:db8::1,203.0.113.9", ("2001:db8::1", "203.0.113.9")),
        ("035.249.253.232", ("35.249.253.232",)),
        ("AWS Internal", ()),
        ("s3.amazonaws.com", ()),
        ("ec2.amazonaws.com.cn", ()),
        ("redacted", ()),
        ("...", ()),
        ("256.1.1.1", ()),
        ("", ()),
        (None, ()),
    ],
)
def test_parse_source_addresses_forms(
    source_ip: str | None, expected: tuple[str, ...]
) -> None:
    addresses = parse_source_addresses(source_ip)

    assert addresses == tuple(ipaddress.ip_address(a) for a in expected)


def test_record_from_dict_numeric_source_ip_does_not_crash() -> None:
    raw = {**stratus_record(), "sourceIPAddress": 12345}

    record = record_from_dict(raw)

    assert record.source_ip == "12345"
    assert record.source_addresses == ()


# Other fields and rejections


def test_record_from_dict_null_parameters_become_empty_mappings() -> None:
    raw = {**stratus_record(), "requestParameters": None, "responseElements": "x"}

    record = record_from_dict(raw)

    assert record.request_parameters == {}
    assert record.response_elements == {}


def test_record_from_dict_error_code_marks_failure() -> None:
    raw = {**stratus_record(), "errorCode": "AccessDenied"}

    record = record_from_dict(raw)

    assert record.succeeded is False
    assert record.error_code == "AccessDenied"


def test_record_from_dict_no_event_source_is_rejected() -> None:
    raw = load_lines("panther_rule_tests.jsonl")[5]["event"]

    with pytest.raises(RecordError, match="eventSource"):
        record_from_dict(raw)


def test_record_from_dict_insight_is_rejected() -> None:
    raw = load_json("otel_records_file.json")["Records"][3]

    with pytest.raises(RecordError):
        record_from_dict(raw)


@pytest.mark.parametrize(
    "marker", [{"eventCategory": "Insight"}, {"insightDetails": {"state": "Start"}}]
)
def test_record_from_dict_insight_marker_is_rejected(marker: dict[str, Any]) -> None:
    raw = {**stratus_record(), **marker}

    with pytest.raises(RecordError, match="Insights"):
        record_from_dict(raw)
