"""Tests for high-risk-action: denied and successful attempts, wildcards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from detectors.detector import Finding
from detectors.high_risk_action import HighRiskAction
from service.records import CloudTrailRecord, record_from_dict

LoadRecord = Callable[..., CloudTrailRecord]
RawRecord = Callable[..., dict[str, Any]]
Detect = Callable[
    [type[Any], dict[str, Any], Sequence[CloudTrailRecord]], list[Finding]
]

LEAVE_ORG_ROLE = "arn:aws:iam::307578594326:role/stratus-red-team-leave-org-role"
BUCKET_ROLE = "arn:aws:iam::777788889999:role/AssumeNothing"


def _policy(ours: str, role: str, actions: list[str] | None = None) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "organization": {"accounts": [ours]},
        "third_parties": [{"id": "acme", "name": "Acme", "roles": [role]}],
    }
    if actions is not None:
        policy["detectors"] = {"high-risk-action": {"actions": actions}}
    return policy


def test_high_risk_denied_attempt_is_found_as_denied(
    load_record: LoadRecord, detect: Detect
) -> None:
    record = load_record("stratus_organizations_leave.json", 1)

    findings = detect(HighRiskAction, _policy("307578594326", LEAVE_ORG_ROLE), [record])

    assert len(findings) == 1
    finding = findings[0]
    assert finding.title == (
        "Acme attempted high-risk organizations:LeaveOrganization (denied)"
    )
    assert finding.details["outcome"] == "denied"
    assert finding.details["succeeded"] is False
    assert finding.details["error_code"] == "AccessDenied"
    assert finding.details["pattern"] == "organizations:LeaveOrganization"


def test_high_risk_successful_call_is_found_as_succeeded(
    load_record: LoadRecord, detect: Detect
) -> None:
    record = load_record("awsdocs_iam_delete_bucket_session.json")

    findings = detect(HighRiskAction, _policy("777788889999", BUCKET_ROLE), [record])

    assert [f.title for f in findings] == ["Acme called high-risk s3:DeleteBucket"]
    assert findings[0].details["outcome"] == "succeeded"
    assert "error_code" not in findings[0].details


@pytest.mark.parametrize(
    ("actions", "found"),
    [
        (["s3:Delete*"], True),
        (["S3:deletebucket"], True),
        (["s3:DeleteBucke?"], True),
        (["*"], True),
        (["s3:Get*", "iam:*"], False),
        (["s3:DeleteBucketPolicy"], False),
        ([], False),
    ],
)
def test_high_risk_configured_patterns(
    load_record: LoadRecord, detect: Detect, actions: list[str], found: bool
) -> None:
    record = load_record("awsdocs_iam_delete_bucket_session.json")
    policy = _policy("777788889999", BUCKET_ROLE, actions)

    assert bool(detect(HighRiskAction, policy, [record])) is found


def test_high_risk_failed_call_is_found_as_failed(
    raw_record: RawRecord, detect: Detect
) -> None:
    """The error code is derived: the awsdocs DeleteBucket succeeded."""
    raw = raw_record("awsdocs_iam_delete_bucket_session.json", errorCode="NoSuchBucket")

    findings = detect(
        HighRiskAction, _policy("777788889999", BUCKET_ROLE), [record_from_dict(raw)]
    )

    assert findings[0].details["outcome"] == "failed"


def test_high_risk_our_own_call_is_not_found(
    load_record: LoadRecord, detect: Detect
) -> None:
    record = load_record("stratus_cloudtrail_stop.json")
    policy = _policy("143434273843", LEAVE_ORG_ROLE)

    assert detect(HighRiskAction, policy, [record]) == []
