"""Tests for mfa-missing on real AssumeRole records and real sessions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from detectors.detector import Finding
from detectors.mfa_missing import MfaMissing
from service.records import CloudTrailRecord, record_from_dict

LoadRecord = Callable[..., CloudTrailRecord]
RawRecord = Callable[..., dict[str, Any]]
Detect = Callable[
    [type[Any], dict[str, Any], Sequence[CloudTrailRecord]], list[Finding]
]

CROSS_ACCOUNT = "awsdocs_iam_assume_role_cross_account.jsonl"
NO_MFA = "awsdocs_iam_assume_role_no_mfa.json"
LEAVE_ORG_ROLE = "arn:aws:iam::307578594326:role/stratus-red-team-leave-org-role"


def _policy(ours: str, require_mfa: bool = True, **party: Any) -> dict[str, Any]:
    return {
        "organization": {"accounts": [ours]},
        "third_parties": [{"id": "acme", "require_mfa": require_mfa, **party}],
    }


def test_mfa_assume_role_without_serial_number_is_found(
    load_record: LoadRecord, detect: Detect
) -> None:
    policy = _policy("123456789012", accounts=["111122223333"])

    findings = detect(MfaMissing, policy, [load_record(NO_MFA)])

    assert [(f.detector, f.severity, f.action) for f in findings] == [
        ("mfa-missing", "medium", "sts:AssumeRole")
    ]
    assert findings[0].title == "acme called sts:AssumeRole without MFA"
    assert findings[0].details["attribution"] == "assume_role"


def test_mfa_assume_role_with_serial_number_is_not_found(
    load_record: LoadRecord, detect: Detect
) -> None:
    policy = _policy("111122223333", accounts=["777788889999"])

    assert detect(MfaMissing, policy, [load_record(CROSS_ACCOUNT, 1)]) == []


def test_mfa_assume_role_with_token_code_only_is_not_found(
    raw_record: RawRecord, detect: Detect
) -> None:
    """The token code is derived: the awsdocs record logs only serialNumber."""
    raw = raw_record(CROSS_ACCOUNT, 1)
    raw["requestParameters"]["tokenCode"] = raw["requestParameters"].pop("serialNumber")
    policy = _policy("111122223333", accounts=["777788889999"])

    assert detect(MfaMissing, policy, [record_from_dict(raw)]) == []


def test_mfa_denied_assume_role_without_parameters_is_not_judged(
    raw_record: RawRecord, detect: Detect
) -> None:
    raw = raw_record("stratus_get_password_data.json", 1)
    raw["userIdentity"]["accountId"] = "444455556666"
    policy = _policy("457448411975", accounts=["444455556666"])

    assert detect(MfaMissing, policy, [record_from_dict(raw)]) == []


@pytest.mark.parametrize(
    ("mfa", "found"), [("false", True), (None, True), ("true", False)]
)
def test_mfa_session_call_follows_mfa_authenticated(
    raw_record: RawRecord, detect: Detect, mfa: str | None, found: bool
) -> None:
    raw = raw_record("stratus_organizations_leave.json", 1)
    attributes = raw["userIdentity"]["sessionContext"]["attributes"]
    if mfa is None:
        del attributes["mfaAuthenticated"]
    else:
        attributes["mfaAuthenticated"] = mfa
    policy = _policy("307578594326", roles=[LEAVE_ORG_ROLE])

    findings = detect(MfaMissing, policy, [record_from_dict(raw)])

    assert bool(findings) is found


def test_mfa_direct_call_with_mfa_is_not_found(
    load_record: LoadRecord, detect: Detect
) -> None:
    """The panther record's caller session was created with MFA ("true")."""
    policy = _policy("123451234515", accounts=["123451234516"])
    record = load_record("panther_traffic_mirror_cross_account.json")

    assert detect(MfaMissing, policy, [record]) == []


def test_mfa_not_required_is_not_checked(
    load_record: LoadRecord, detect: Detect
) -> None:
    policy = _policy("123456789012", require_mfa=False, accounts=["111122223333"])

    assert detect(MfaMissing, policy, [load_record(NO_MFA)]) == []
