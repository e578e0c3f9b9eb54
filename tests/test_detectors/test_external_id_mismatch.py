"""Tests for external-id-mismatch; externalId is added to real AssumeRole records.

No corpus record carries an externalId, so each case derives one from the awsdocs
AWSAccount AssumeRole by adding requestParameters.externalId.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from detectors.detector import Finding
from detectors.external_id_mismatch import ExternalIdMismatch
from service.records import CloudTrailRecord, record_from_dict

LoadRecord = Callable[..., CloudTrailRecord]
RawRecord = Callable[..., dict[str, Any]]
Detect = Callable[
    [type[Any], dict[str, Any], Sequence[CloudTrailRecord]], list[Finding]
]


NO_MFA = "awsdocs_iam_assume_role_no_mfa.json"
EXTERNAL_ID = "acme-7f3a-external"


def _policy(**party: Any) -> dict[str, Any]:
    return {
        "organization": {"accounts": ["123456789012"]},
        "third_parties": [
            {
                "id": "acme",
                "name": "Acme Analytics",
                "accounts": ["111122223333"],
                "external_id_sha256": hashlib.sha256(EXTERNAL_ID.encode()).hexdigest(),
                **party,
            }
        ],
    }


def _with_external_id(raw: dict[str, Any], value: object) -> CloudTrailRecord:
    raw["requestParameters"]["externalId"] = value
    return record_from_dict(raw)


def test_external_id_missing_is_found(load_record: LoadRecord, detect: Detect) -> None:
    findings = detect(ExternalIdMismatch, _policy(), [load_record(NO_MFA)])

    assert len(findings) == 1
    assert findings[0].title == (
        "Acme Analytics assumed arn:aws:iam::123456789012:role/DevRole "
        "without external ID"
    )
    assert findings[0].details["problem"] == "missing"
    assert findings[0].third_party == "acme"


@pytest.mark.parametrize("given", ["someone-else", "", 12345])
def test_external_id_other_value_is_found_and_not_copied(
    raw_record: RawRecord, detect: Detect, given: object
) -> None:
    record = _with_external_id(raw_record(NO_MFA), given)

    findings = detect(ExternalIdMismatch, _policy(), [record])

    assert len(findings) == 1
    expected = "mismatch" if given == "someone-else" else "missing"
    assert findings[0].details["problem"] == expected
    digest = hashlib.sha256(b"someone-else").hexdigest()
    text = repr(findings[0])
    assert "someone-else" not in text
    assert digest not in text
    assert _policy()["third_parties"][0]["external_id_sha256"] not in text


def test_external_id_matching_is_not_found(
    raw_record: RawRecord, detect: Detect
) -> None:
    record = _with_external_id(raw_record(NO_MFA), EXTERNAL_ID)

    assert detect(ExternalIdMismatch, _policy(), [record]) == []


def test_external_id_not_configured_is_not_checked(
    load_record: LoadRecord, detect: Detect
) -> None:
    policy = _policy(external_id_sha256=None)

    assert detect(ExternalIdMismatch, policy, [load_record(NO_MFA)]) == []


def test_external_id_session_call_is_not_checked(
    raw_record: RawRecord, detect: Detect
) -> None:
    """Only the AssumeRole carries an external ID; the session's calls do not."""
    policy = {
        "organization": {"accounts": ["457448411975"]},
        "third_parties": [
            {
                "id": "acme",
                "roles": [
                    "arn:aws:iam::457448411975:role/"
                    "stratus-red-team-ec2-get-password-data-role"
                ],
                "external_id_sha256": "0" * 64,
            }
        ],
    }
    record = record_from_dict(raw_record("stratus_get_password_data.json", 2))

    assert detect(ExternalIdMismatch, policy, [record]) == []
