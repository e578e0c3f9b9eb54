"""Tests for the policy file: loading, defaults, and errors that name the field."""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pytest

from detectors import third_parties
from detectors.third_parties import (
    DEFAULT_HIGH_RISK_ACTIONS,
    DEFAULT_SEVERITIES,
    DETECTOR_IDS,
    PolicyError,
    empty_policy,
    load_policy,
    parse_policy,
)

EXTERNAL_ID = "acme-external-id-7f3a"
ISSUE_EXAMPLE = f"""
organization:
  accounts: ["111122223333"]
third_parties:
  - id: acme-analytics
    name: Acme Analytics
    accounts: ["444455556666"]
    roles: ["arn:aws:iam::111122223333:role/AcmeAuditRole"]
    external_id_sha256: "{hashlib.sha256(EXTERNAL_ID.encode()).hexdigest()}"
    require_mfa: false
    networks: ["203.0.113.0/24", "2001:db8:1234::/48"]
    hours: {{timezone: America/New_York, days: [mon, tue, wed, thu, fri],
             start: "09:00", end: "17:00"}}
    valid_from: "2024-01-01T00:00:00Z"
    valid_until: "2024-12-31T23:59:59Z"
    allowed_actions: ["s3:GetObject", "s3:List*"]
detectors:
  high-risk-action: {{severity: high, actions: ["s3:DeleteBucket", "iam:CreateUser"]}}
  outside-business-hours: {{enabled: true, severity: medium}}
"""


def _party(**fields: Any) -> dict[str, Any]:
    return {"id": "acme", "accounts": ["444455556666"], **fields}


def test_load_policy_issue_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(ISSUE_EXAMPLE)

    policy = load_policy(path)

    party = policy.third_parties[0]
    assert policy.organization.accounts == ("111122223333",)
    assert party.display_name == "Acme Analytics"
    assert party.networks[1] == ipaddress.ip_network("2001:db8:1234::/48")
    assert party.hours is not None
    assert (party.hours.start, party.hours.end) == (time(9), time(17))
    assert party.valid_until == datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert policy.detectors.high_risk_action.actions == (
        "s3:DeleteBucket",
        "iam:CreateUser",
    )
    assert policy.detectors.severity("outside-business-hours") == "medium"


def test_empty_policy_defaults_every_detector_enabled() -> None:
    policy = empty_policy()

    assert all(policy.detectors.get(i).enabled for i in DETECTOR_IDS)
    assert {i: policy.detectors.severity(i) for i in DETECTOR_IDS} == dict(
        DEFAULT_SEVERITIES
    )
    assert policy.detectors.high_risk_action.actions == DEFAULT_HIGH_RISK_ACTIONS


def test_parse_policy_disabled_detector_keeps_default_severity() -> None:
    policy = parse_policy({"detectors": {"mfa-missing": {"enabled": False}}})

    assert policy.detectors.get("mfa-missing").enabled is False
    assert policy.detectors.severity("mfa-missing") == DEFAULT_SEVERITIES["mfa-missing"]


def test_parse_policy_external_id_hash_is_lowercased() -> None:
    digest = hashlib.sha256(b"x").hexdigest()

    policy = parse_policy(
        {"third_parties": [_party(external_id_sha256=digest.upper())]}
    )

    assert policy.third_parties[0].external_id_sha256 == digest


def test_parse_policy_overnight_hours_and_short_hour_are_accepted() -> None:
    hours = {
        "timezone": "Europe/Paris",
        "days": ["sat"],
        "start": "22:00",
        "end": "6:30",
    }

    policy = parse_policy({"third_parties": [_party(hours=hours)]})

    assert policy.third_parties[0].hours is not None
    assert policy.third_parties[0].hours.end == time(6, 30)


@pytest.mark.parametrize(
    ("data", "path", "value"),
    [
        (
            {"third_parties": [_party(networks=["203.0.113.0/24", "10.0.0.1/8"])]},
            "third_parties[0].networks[1]",
            "'10.0.0.1/8'",
        ),
        (
            {"third_parties": [_party(networks=["2001:db8::/129"])]},
            "third_parties[0].networks[0]",
            "'2001:db8::/129'",
        ),
        (
            {"organization": {"accounts": ["11112222333"]}},
            "organization.accounts[0]",
            "'11112222333'",
        ),
        (
            {"third_parties": [_party(accounts=[444455556666])]},
            "third_parties[0].accounts[0]",
            "444455556666",
        ),
        (
            {"third_parties": [_party(roles=["arn:aws:iam::111122223333:user/Bob"])]},
            "third_parties[0].roles[0]",
            "user/Bob",
        ),
        (
            {"third_parties": [_party(allowed_actions=["s3 GetObject"])]},
            "third_parties[0].allowed_actions[0]",
            "'s3 GetObject'",
        ),
        (
            {"third_parties": [_party(valid_from="2024-01-01T00:00:00")]},
            "third_parties[0].valid_from",
            "'2024-01-01T00:00:00'",
        ),
        (
            {
                "third_parties": [
                    _party(
                        hours={
                            "timezone": "Mars/Olympus",
                            "start": "09:00",
                            "end": "17:00",
                        }
                    )
                ]
            },
            "third_parties[0].hours.timezone",
            "'Mars/Olympus'",
        ),
        (
            {
                "third_parties": [
                    _party(hours={"timezone": "UTC", "start": "25:00", "end": "17:00"})
                ]
            },
            "third_parties[0].hours.start",
            "'25:00'",
        ),
        (
            {
                "third_parties": [
                    _party(hours={"timezone": "UTC", "start": 540, "end": "17:00"})
                ]
            },
            "third_parties[0].hours.start",
            "540",
        ),
        (
            {
                "third_parties": [
                    _party(
                        hours={
                            "timezone": "UTC",
                            "days": ["monday"],
                            "start": "09:00",
                            "end": "17:00",
                        }
                    )
                ]
            },
            "third_parties[0].hours.days[0]",
            "'monday'",
        ),
        (
            {"third_parties": [_party(colour="blue")]},
            "third_parties[0].colour",
            "'blue'",
        ),
        (
            {"detectors": {"mfa-missing": {"severity": "urgent"}}},
            "detectors.mfa-missing.severity",
            "'urgent'",
        ),
        (
            {"detectors": {"high-risk-action": {"actions": ["delete everything"]}}},
            "detectors.high-risk-action.actions[0]",
            "'delete everything'",
        ),
        ({"detectors": {"mfa-mising": {}}}, "detectors.mfa-mising", "unknown detector"),
        (
            {"third_parties": [_party(networks=[167772160])]},
            "third_parties[0].networks[0]",
            "167772160",
        ),
    ],
)
def test_parse_policy_invalid_field_names_path_and_value(
    data: dict[str, Any], path: str, value: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(data, "policy.yaml")

    message = str(caught.value)
    assert message.startswith(f"policy.yaml: {path}")
    assert value in message


@pytest.mark.parametrize(
    ("parties", "fragment"),
    [
        ([{"id": "acme"}], "needs at least one of accounts or roles"),
        ([_party(), _party(accounts=["777788889999"])], "'acme' is used twice"),
        (
            [_party(), {"id": "other", "accounts": ["444455556666"]}],
            "'444455556666' already belongs to acme",
        ),
        ([_party(accounts=["111122223333"])], "is an organization account"),
        (
            [
                _party(
                    valid_from="2025-01-01T00:00:00Z",
                    valid_until="2024-01-01T00:00:00Z",
                )
            ],
            "valid_from must be before valid_until",
        ),
        ([{"id": "Acme Inc", "accounts": ["444455556666"]}], "third_parties[0].id"),
    ],
)
def test_parse_policy_inconsistent_parties_is_rejected(
    parties: list[dict[str, Any]], fragment: str
) -> None:
    data = {"organization": {"accounts": ["111122223333"]}, "third_parties": parties}

    with pytest.raises(PolicyError, match=None) as caught:
        parse_policy(data)

    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "party",
    [
        _party(external_id_sha256=EXTERNAL_ID),
        _party(external_id=EXTERNAL_ID),
        _party(externalId=EXTERNAL_ID),
    ],
)
def test_parse_policy_external_id_is_never_echoed(party: dict[str, Any]) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy({"third_parties": [party]})

    assert "third_parties[0].external" in str(caught.value)
    assert EXTERNAL_ID not in str(caught.value)


def test_parse_policy_not_a_mapping_is_rejected() -> None:
    with pytest.raises(PolicyError, match="mapping at the top level"):
        parse_policy(["organization"])


def test_load_policy_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text('organization:\n  accounts: ["111122223333"\n')

    with pytest.raises(PolicyError, match=r"not valid YAML at line \d"):
        load_policy(path)


def test_load_policy_unquoted_naive_timestamp_names_path_and_value(
    tmp_path: Path,
) -> None:
    """YAML reads an unquoted timestamp as a datetime; without a zone it fails."""
    path = tmp_path / "policy.yaml"
    path.write_text(
        "third_parties:\n"
        "  - id: acme\n"
        "    accounts: ['444455556666']\n"
        "    valid_from: 2024-01-01 00:00:00\n"
    )

    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    assert "third_parties[0].valid_from" in str(caught.value)
    assert "'2024-01-01T00:00:00'" in str(caught.value)


def test_load_policy_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "absent.yaml")


def test_load_policy_empty_file_is_the_empty_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("")

    assert load_policy(path) == empty_policy()


def test_load_policy_huge_file_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"#" * (third_parties.MAX_POLICY_BYTES + 10))

    with pytest.raises(PolicyError, match="larger than"):
        load_policy(path)
