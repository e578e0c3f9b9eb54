"""Tests for outside-business-hours: time zones, daylight saving, overnight."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from detectors.detector import Finding
from detectors.outside_business_hours import OutsideBusinessHours
from service.records import CloudTrailRecord, record_from_dict

LoadRecord = Callable[..., CloudTrailRecord]
RawRecord = Callable[..., dict[str, Any]]
Detect = Callable[
    [type[Any], dict[str, Any], Sequence[CloudTrailRecord]], list[Finding]
]

NO_MFA = "awsdocs_iam_assume_role_no_mfa.json"
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def _policy(
    start: str, end: str, days: list[str] = WEEKDAYS, tz: str = "America/New_York"
) -> dict[str, Any]:
    hours = {"timezone": tz, "days": days, "start": start, "end": end}
    return {
        "organization": {"accounts": ["123456789012"]},
        "third_parties": [{"id": "acme", "accounts": ["111122223333"], "hours": hours}],
    }


def test_hours_inside_is_not_found(load_record: LoadRecord, detect: Detect) -> None:
    """2020-04-02T18:20:53Z is Thursday 14:20 in New York (EDT)."""
    findings = detect(
        OutsideBusinessHours, _policy("09:00", "17:00"), [load_record(NO_MFA)]
    )

    assert findings == []


def test_hours_outside_is_found_with_local_time(
    load_record: LoadRecord, detect: Detect
) -> None:
    findings = detect(
        OutsideBusinessHours, _policy("09:00", "14:00"), [load_record(NO_MFA)]
    )

    assert len(findings) == 1
    assert findings[0].severity == "low"
    assert findings[0].details == {
        "attribution": "assume_role",
        "external_account": "111122223333",
        "local_time": "2020-04-02T14:20:53-04:00",
        "timezone": "America/New_York",
        "hours": "mon,tue,wed,thu,fri 09:00-14:00",
    }
    assert findings[0].title == "acme called sts:AssumeRole outside business hours"


@pytest.mark.parametrize(
    ("event_time", "found"),
    [
        ("2024-03-08T13:30:00Z", True),  # Friday 08:30 EST
        ("2024-03-11T13:30:00Z", False),  # Monday 09:30 EDT, after the spring jump
        ("2024-03-11T21:30:00Z", True),  # Monday 17:30 EDT
        ("2024-11-01T13:30:00Z", False),  # Friday 09:30 EDT
        ("2024-11-04T13:30:00Z", True),  # Monday 08:30 EST, after the fall back
        ("2024-11-04T21:59:59Z", False),  # Monday 16:59:59 EST
        ("2024-11-09T15:00:00Z", True),  # Saturday 10:00 EST
    ],
)
def test_hours_daylight_saving_in_new_york(
    load_record: LoadRecord, detect: Detect, event_time: str, found: bool
) -> None:
    record = load_record(NO_MFA, eventTime=event_time)

    findings = detect(OutsideBusinessHours, _policy("09:00", "17:00"), [record])

    assert bool(findings) is found


@pytest.mark.parametrize(
    ("event_time", "found"),
    [
        ("2024-06-03T23:30:00Z", False),  # Monday 23:30 UTC, late part of Monday
        ("2024-06-04T05:59:00Z", False),  # Tuesday 05:59, early part of Monday's
        ("2024-06-04T06:00:00Z", True),  # Tuesday 06:00, window closed
        ("2024-06-04T12:00:00Z", True),  # Tuesday noon
        ("2024-06-03T03:00:00Z", True),  # Monday 03:00 belongs to Sunday night
        ("2024-06-08T03:00:00Z", False),  # Saturday 03:00 belongs to Friday night
    ],
)
def test_hours_overnight_window(
    load_record: LoadRecord, detect: Detect, event_time: str, found: bool
) -> None:
    policy = _policy("22:00", "06:00", tz="UTC")
    record = load_record(NO_MFA, eventTime=event_time)

    assert bool(detect(OutsideBusinessHours, policy, [record])) is found


@pytest.mark.parametrize(
    ("event_time", "found"),
    [("2024-06-08T12:00:00Z", False), ("2024-06-10T12:00:00Z", True)],
)
def test_hours_equal_start_and_end_mean_whole_days(
    load_record: LoadRecord, detect: Detect, event_time: str, found: bool
) -> None:
    policy = _policy("00:00", "00:00", days=["sat", "sun"], tz="UTC")
    record = load_record(NO_MFA, eventTime=event_time)

    assert bool(detect(OutsideBusinessHours, policy, [record])) is found


def test_hours_record_without_time_is_skipped(
    raw_record: RawRecord, detect: Detect
) -> None:
    raw = raw_record(NO_MFA)
    del raw["eventTime"]

    findings = detect(
        OutsideBusinessHours, _policy("09:00", "10:00"), [record_from_dict(raw)]
    )

    assert findings == []
