"""Tests for DetectionEngine: detector order, enabling, and a whole session."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from detectors.attribution import Attribution
from detectors.engine import DETECTOR_TYPES, DetectionEngine
from detectors.third_parties import DETECTOR_IDS, empty_policy, parse_policy
from service.records import CloudTrailRecord, record_from_dict

LoadRecord = Callable[..., CloudTrailRecord]
RawRecord = Callable[..., dict[str, Any]]

LEAVE_ORG = "stratus_organizations_leave.json"
VENDOR = "444455556666"
DATA = Path(__file__).parent.parent / "data" / "detectors"


def _vendor_policy(**detectors: Any) -> dict[str, Any]:
    return {
        "organization": {"accounts": ["307578594326"]},
        "third_parties": [
            {
                "id": "acme",
                "accounts": [VENDOR],
                "require_mfa": True,
                "networks": ["203.0.113.0/24"],
                "allowed_actions": ["s3:Get*"],
                "valid_until": "2025-01-01T00:00:00Z",
            }
        ],
        "detectors": detectors,
    }


def _vendor_session(raw_record: RawRecord) -> list[CloudTrailRecord]:
    """The stratus AssumeRole, its caller moved to the vendor's account, then the
    real LeaveOrganization made with the credentials it returned."""
    assume = raw_record(LEAVE_ORG, 0)
    assume["userIdentity"]["accountId"] = VENDOR
    assume["userIdentity"]["arn"] = f"arn:aws:iam::{VENDOR}:user/christophe"
    return [record_from_dict(assume), record_from_dict(raw_record(LEAVE_ORG, 1))]


def test_engine_detector_ids_are_every_detector_in_order() -> None:
    engine = DetectionEngine(empty_policy())

    assert engine.detector_ids == DETECTOR_IDS


def test_engine_vendor_session_findings(raw_record: RawRecord) -> None:
    engine = DetectionEngine(parse_policy(_vendor_policy()))
    assume, leave = _vendor_session(raw_record)

    on_assume = [f.detector for f in engine.process(assume)]
    on_leave = [f.detector for f in engine.process(leave)]

    assert on_assume == ["mfa-missing", "source-network-not-allowed"]
    assert on_leave == [
        "mfa-missing",
        "source-network-not-allowed",
        "high-risk-action",
        "action-not-allowed",
    ]


def test_engine_disabled_detector_does_not_run(raw_record: RawRecord) -> None:
    policy = parse_policy(_vendor_policy(**{"mfa-missing": {"enabled": False}}))
    engine = DetectionEngine(policy)
    assume, leave = _vendor_session(raw_record)
    engine.process(assume)

    findings = engine.process(leave)

    assert "mfa-missing" not in [f.detector for f in findings]
    assert "mfa-missing" not in engine.enabled_ids
    assert "mfa-missing" in engine.detector_ids


def test_engine_severity_override_reaches_findings(raw_record: RawRecord) -> None:
    policy = parse_policy(
        _vendor_policy(**{"high-risk-action": {"severity": "critical"}})
    )
    engine = DetectionEngine(policy)
    assume, leave = _vendor_session(raw_record)
    engine.process(assume)

    findings = engine.process(leave)

    severities = {f.detector: f.severity for f in findings}
    assert severities["high-risk-action"] == "critical"
    assert severities["action-not-allowed"] == "medium"


@pytest.mark.parametrize(
    "name", ["stratus_cloudtrail_stop.json", "otrf_ec2_assume_role_service.json"]
)
def test_engine_ours_and_aws_services_make_no_findings(
    load_record: LoadRecord, name: str
) -> None:
    policy = parse_policy(
        {
            "organization": {"accounts": ["143434273843", "123456789123"]},
            "third_parties": [{"id": "acme", "accounts": [VENDOR]}],
        }
    )

    assert DetectionEngine(policy).process(load_record(name)) == []


def test_engine_findings_are_json_serialisable(raw_record: RawRecord) -> None:
    engine = DetectionEngine(parse_policy(_vendor_policy()))
    findings = [f for r in _vendor_session(raw_record) for f in engine.process(r)]

    details = [json.dumps(dict(f.details)) for f in findings]

    assert len(details) == 6
    assert all(f.event_id and f.event_time and f.dedup_key for f in findings)


def test_engine_every_copied_record_runs_without_error() -> None:
    """Every test record, under a policy that claims all of their accounts."""
    records = []
    for path in sorted(DATA.iterdir()):
        text = path.read_text(encoding="utf-8")
        rows = (
            [json.loads(line) for line in text.splitlines()]
            if path.suffix == ".jsonl"
            else json.loads(text)
        )
        records += [
            record_from_dict(r) for r in (rows if isinstance(rows, list) else [rows])
        ]
    policy = parse_policy(
        {
            "organization": {"accounts": ["123456789012", "444455556666"]},
            "third_parties": [
                {
                    "id": "everyone",
                    "accounts": ["111122223333", "777788889999", "123451234516"],
                    "require_mfa": True,
                    "networks": ["192.0.2.0/24"],
                    "hours": {"timezone": "UTC", "start": "09:00", "end": "10:00"},
                    "valid_from": "2030-01-01T00:00:00Z",
                    "allowed_actions": [],
                }
            ],
        }
    )
    engine = DetectionEngine(policy)

    findings = [f for record in records for f in engine.process(record)]

    assert len(records) == 15
    assert {f.third_party for f in findings} == {"everyone"}
    assert {f.detector for f in findings} >= {
        "mfa-missing",
        "outside-access-window",
        "action-not-allowed",
    }


_FOREIGN = [
    Attribution("ours"),
    Attribution("aws_service"),
    Attribution("unknown"),
    Attribution("unregistered_external", None, VENDOR, "direct"),
]


@pytest.mark.parametrize(
    ("detector_type", "attribution"),
    [
        pytest.param(t, a, id=f"{t.id}-{a.kind}")
        for t in DETECTOR_TYPES
        for a in _FOREIGN
        if not (t.id == "unregistered-external-account" and a.via is not None)
    ],
)
def test_detectors_ignore_records_that_are_not_theirs(
    raw_record: RawRecord, detector_type: Any, attribution: Attribution
) -> None:
    detector = detector_type(parse_policy(_vendor_policy()))
    record = _vendor_session(raw_record)[1]

    assert detector.check(record, attribution) == []
