"""Tests for action-not-allowed: IAM-style allowances, AssumeRole exemption."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from detectors.action_not_allowed import ActionNotAllowed
from detectors.detector import Finding
from service.records import CloudTrailRecord

LoadRecord = Callable[..., CloudTrailRecord]
RawRecord = Callable[..., dict[str, Any]]
Detect = Callable[
    [type[Any], dict[str, Any], Sequence[CloudTrailRecord]], list[Finding]
]

PASSWORD_DATA_ROLE = (
    "arn:aws:iam::457448411975:role/stratus-red-team-ec2-get-password-data-role"
)
NO_MFA = "awsdocs_iam_assume_role_no_mfa.json"


def _policy(allowed: list[str] | None, **party: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": "acme", "roles": [PASSWORD_DATA_ROLE], **party}
    if allowed is not None:
        entry["allowed_actions"] = allowed
    return {"organization": {"accounts": ["457448411975"]}, "third_parties": [entry]}


@pytest.mark.parametrize(
    ("allowed", "found"),
    [
        (["s3:GetObject", "s3:List*"], True),
        (["ec2:GetPasswordData"], False),
        (["EC2:getpassword*"], False),
        (["ec2:Describe*"], True),
        (["*"], False),
        ([], True),
        (None, False),
    ],
)
def test_action_session_call_against_allowance(
    load_record: LoadRecord, detect: Detect, allowed: list[str] | None, found: bool
) -> None:
    record = load_record("stratus_get_password_data.json", 2)

    findings = detect(ActionNotAllowed, _policy(allowed), [record])

    assert bool(findings) is found


def test_action_not_allowed_finding_names_party_and_action(
    load_record: LoadRecord, detect: Detect
) -> None:
    record = load_record("stratus_get_password_data.json", 2)

    findings = detect(ActionNotAllowed, _policy(["s3:Get*"]), [record])

    assert findings[0].title == "acme called ec2:GetPasswordData, not allowed"
    assert findings[0].severity == "medium"
    assert findings[0].details["allowed_actions"] == ["s3:Get*"]
    assert findings[0].dedup_key.endswith("|ec2:GetPasswordData")


@pytest.mark.parametrize(
    ("roles", "found"),
    [
        (["arn:aws:iam::123456789012:role/DevRole"], False),
        ([], False),
        (["arn:aws:iam::123456789012:role/OtherRole"], True),
    ],
    ids=["its_role", "no_roles_registered", "someone_elses_role"],
)
def test_action_assume_role_into_its_role_is_not_outside(
    load_record: LoadRecord, detect: Detect, roles: list[str], found: bool
) -> None:
    policy = {
        "organization": {"accounts": ["123456789012"]},
        "third_parties": [
            {
                "id": "acme",
                "accounts": ["111122223333"],
                "roles": roles,
                "allowed_actions": ["s3:GetObject"],
            }
        ],
    }

    findings = detect(ActionNotAllowed, policy, [load_record(NO_MFA)])

    assert bool(findings) is found
