"""Tests for source-network-not-allowed: IPv4, IPv6, service names, lists."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from detectors.detector import Finding
from detectors.source_network_not_allowed import SourceNetworkNotAllowed
from service.records import CloudTrailRecord, record_from_dict

LoadRecord = Callable[..., CloudTrailRecord]
RawRecord = Callable[..., dict[str, Any]]
Detect = Callable[
    [type[Any], dict[str, Any], Sequence[CloudTrailRecord]], list[Finding]
]

NO_MFA = "awsdocs_iam_assume_role_no_mfa.json"


def _policy(*networks: str) -> dict[str, Any]:
    return {
        "organization": {"accounts": ["123456789012"]},
        "third_parties": [
            {"id": "acme", "accounts": ["111122223333"], "networks": list(networks)}
        ],
    }


def test_network_outside_ipv4_is_found(load_record: LoadRecord, detect: Detect) -> None:
    findings = detect(
        SourceNetworkNotAllowed, _policy("198.51.100.0/24"), [load_record(NO_MFA)]
    )

    assert len(findings) == 1
    finding = findings[0]
    assert finding.source_ip == "203.0.113.64"
    assert finding.title == "acme called sts:AssumeRole from 203.0.113.64"
    assert finding.details["outside_addresses"] == ["203.0.113.64"]
    assert finding.details["allowed_networks"] == ["198.51.100.0/24"]
    assert finding.dedup_key.endswith("|203.0.113.64")


@pytest.mark.parametrize(
    ("source", "networks", "found"),
    [
        ("203.0.113.64", ["203.0.113.0/24"], False),
        ("203.0.113.64", ["2001:db8:1234::/48", "203.0.113.64/32"], False),
        ("2001:db8:1234:5::7", ["203.0.113.0/24", "2001:db8:1234::/48"], False),
        ("2001:db8:9999::7", ["203.0.113.0/24", "2001:db8:1234::/48"], True),
        ("::ffff:203.0.113.9", ["203.0.113.0/24"], False),
        ("203.0.113.64, 198.51.100.1", ["203.0.113.0/24"], True),
        ("203.0.113.64, 203.0.113.65", ["203.0.113.0/24"], False),
        ("sts.amazonaws.com", ["198.51.100.0/24"], False),
        ("AWS Internal", ["198.51.100.0/24"], False),
        (None, ["198.51.100.0/24"], False),
    ],
    ids=[
        "ipv4_inside",
        "ipv4_host_route",
        "ipv6_inside",
        "ipv6_outside",
        "ipv4_mapped_ipv6",
        "list_one_outside",
        "list_all_inside",
        "service_name",
        "aws_internal",
        "no_address",
    ],
)
def test_network_source_variants(
    raw_record: RawRecord,
    detect: Detect,
    source: str | None,
    networks: list[str],
    found: bool,
) -> None:
    """The source address is derived from the awsdocs record; none is IPv6."""
    raw = raw_record(NO_MFA)
    if source is None:
        del raw["sourceIPAddress"]
    else:
        raw["sourceIPAddress"] = source

    findings = detect(
        SourceNetworkNotAllowed, _policy(*networks), [record_from_dict(raw)]
    )

    assert bool(findings) is found


def test_network_aws_internal_cross_account_is_not_found(
    load_record: LoadRecord, detect: Detect
) -> None:
    policy = {
        "organization": {"accounts": ["123451234515"]},
        "third_parties": [
            {"id": "acme", "accounts": ["123451234516"], "networks": ["10.0.0.0/8"]}
        ],
    }
    record = load_record("panther_traffic_mirror_cross_account.json")

    assert detect(SourceNetworkNotAllowed, policy, [record]) == []


def test_network_party_without_networks_is_not_checked(
    load_record: LoadRecord, detect: Detect
) -> None:
    assert detect(SourceNetworkNotAllowed, _policy(), [load_record(NO_MFA)]) == []
