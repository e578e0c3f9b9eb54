"""Tests for outside-access-window: before valid_from, after valid_until."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from detectors.detector import Finding
from detectors.outside_access_window import OutsideAccessWindow
from service.records import CloudTrailRecord, record_from_dict

LoadRecord = Callable[..., CloudTrailRecord]
RawRecord = Callable[..., dict[str, Any]]
Detect = Callable[
    [type[Any], dict[str, Any], Sequence[CloudTrailRecord]], list[Finding]
]

NO_MFA = "awsdocs_iam_assume_role_no_mfa.json"


def _policy(**window: str) -> dict[str, Any]:
    return {
        "organization": {"accounts": ["123456789012"]},
        "third_parties": [{"id": "acme", "accounts": ["111122223333"], **window}],
    }


@pytest.mark.parametrize(
    ("window", "side"),
    [
        ({"valid_from": "2021-01-01T00:00:00Z"}, "before"),
        ({"valid_until": "2020-04-02T18:20:52Z"}, "after"),
        ({"valid_from": "2020-04-02T18:20:54+00:00"}, "before"),
    ],
)
def test_window_outside_is_found(
    load_record: LoadRecord, detect: Detect, window: dict[str, str], side: str
) -> None:
    findings = detect(OutsideAccessWindow, _policy(**window), [load_record(NO_MFA)])

    assert len(findings) == 1
    assert findings[0].severity == "high"
    assert findings[0].title == f"acme called sts:AssumeRole {side} its access window"
    assert findings[0].dedup_key.endswith(f"|{side}")


@pytest.mark.parametrize(
    "window",
    [
        {},
        {"valid_from": "2020-04-02T18:20:53Z", "valid_until": "2020-04-02T18:20:54Z"},
        {"valid_from": "2020-04-02T14:00:00-04:00"},
        {"valid_until": "2020-04-02T18:20:53Z"},
    ],
)
def test_window_inside_is_not_found(
    load_record: LoadRecord, detect: Detect, window: dict[str, str]
) -> None:
    assert detect(OutsideAccessWindow, _policy(**window), [load_record(NO_MFA)]) == []


def test_window_record_without_time_is_skipped(
    raw_record: RawRecord, detect: Detect
) -> None:
    raw = raw_record(NO_MFA, eventTime="redacted")
    policy = _policy(valid_from="2021-01-01T00:00:00Z")

    assert detect(OutsideAccessWindow, policy, [record_from_dict(raw)]) == []
