"""Tests for unregistered-external-account on real cross-account records."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from detectors.detector import Finding
from detectors.unregistered_external_account import UnregisteredExternalAccount
from service.records import CloudTrailRecord

LoadRecord = Callable[..., CloudTrailRecord]
RawRecord = Callable[..., dict[str, Any]]
Detect = Callable[
    [type[Any], dict[str, Any], Sequence[CloudTrailRecord]], list[Finding]
]


NO_MFA = "awsdocs_iam_assume_role_no_mfa.json"


def test_unregistered_assume_role_into_our_account_is_found(
    load_record: LoadRecord, detect: Detect
) -> None:
    policy = {"organization": {"accounts": ["123456789012"]}}

    findings = detect(UnregisteredExternalAccount, policy, [load_record(NO_MFA)])

    assert len(findings) == 1
    finding = findings[0]
    assert finding.detector == "unregistered-external-account"
    assert finding.severity == "high"
    assert finding.third_party is None
    assert finding.title == (
        "Unregistered external account 111122223333 assumed "
        "arn:aws:iam::123456789012:role/DevRole"
    )
    assert finding.details["role_arn"] == "arn:aws:iam::123456789012:role/DevRole"
    assert finding.dedup_key == (
        "unregistered-external-account|111122223333|123456789012|AIDAJ45Q7YFFAREXAMPLE|"
        "arn:aws:iam::123456789012:role/DevRole"
    )


def test_unregistered_direct_call_is_found_with_the_action(
    load_record: LoadRecord, detect: Detect
) -> None:
    policy = {
        "organization": {"accounts": ["444455556666"]},
        "detectors": {"unregistered-external-account": {"severity": "critical"}},
    }
    record = load_record("awsdocs_s3_list_buckets_cross_account.json")

    findings = detect(UnregisteredExternalAccount, policy, [record])

    assert [(f.severity, f.action, f.account_id) for f in findings] == [
        ("critical", "s3:ListBuckets", "444455556666")
    ]
    assert "called s3:ListBuckets" in findings[0].title


@pytest.mark.parametrize(
    "policy",
    [
        {
            "organization": {"accounts": ["123456789012"]},
            "third_parties": [{"id": "acme", "accounts": ["111122223333"]}],
        },
        {"organization": {"accounts": []}},
        {"organization": {"accounts": ["111122223333"]}},
    ],
    ids=["registered", "no_organization", "caller_is_ours"],
)
def test_unregistered_registered_or_unknowable_is_not_found(
    load_record: LoadRecord, detect: Detect, policy: dict[str, Any]
) -> None:
    findings = detect(UnregisteredExternalAccount, policy, [load_record(NO_MFA)])

    assert findings == []
