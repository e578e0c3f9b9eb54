"""Tests for attribution: AssumeRole, sessions, direct calls, AWS services, us."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from detectors.attribution import Attributor
from detectors.engine import DetectionEngine
from detectors.third_parties import parse_policy
from service.records import CloudTrailRecord, record_from_dict

LoadRecord = Callable[..., CloudTrailRecord]
RawRecord = Callable[..., dict[str, Any]]

CROSS_ACCOUNT = "awsdocs_iam_assume_role_cross_account.jsonl"
NO_MFA = "awsdocs_iam_assume_role_no_mfa.json"
LEAVE_ORG = "stratus_organizations_leave.json"
LEAVE_ORG_ROLE = "arn:aws:iam::307578594326:role/stratus-red-team-leave-org-role"
PASSWORD_DATA = "stratus_get_password_data.json"
PASSWORD_DATA_ROLE = (
    "arn:aws:iam::457448411975:role/stratus-red-team-ec2-get-password-data-role"
)
VENDOR = "444455556666"


def _attributor(ours: list[str], *parties: dict[str, Any], **kw: Any) -> Attributor:
    policy = parse_policy(
        {"organization": {"accounts": ours}, "third_parties": list(parties)}
    )
    return Attributor(policy, **kw)


def _from_vendor(raw: dict[str, Any]) -> dict[str, Any]:
    """The stratus AssumeRole as if the caller were the vendor's IAM user.

    The stratus detonations run in one account; the caller's account and ARN are
    changed so the same real AssumeRole becomes a cross-account one.
    """
    raw["userIdentity"]["accountId"] = VENDOR
    raw["userIdentity"]["arn"] = f"arn:aws:iam::{VENDOR}:user/christophe"
    return raw


@pytest.mark.parametrize("index", [0, 1], ids=["caller_iam_user", "aws_account"])
def test_attribute_assume_role_by_registered_account_is_third_party(
    load_record: LoadRecord, index: int
) -> None:
    attributor = _attributor(
        ["111122223333"], {"id": "acme", "accounts": ["777788889999"]}
    )

    attribution = attributor.attribute(load_record(CROSS_ACCOUNT, index))

    assert attribution.kind == "third_party"
    assert attribution.third_party is not None
    assert attribution.third_party.id == "acme"
    assert (attribution.external_account, attribution.via) == (
        "777788889999",
        "assume_role",
    )


def test_attribute_assume_role_by_unregistered_account_is_unregistered_external(
    load_record: LoadRecord,
) -> None:
    attributor = _attributor(["123456789012"])

    attribution = attributor.attribute(load_record(NO_MFA))

    assert attribution.kind == "unregistered_external"
    assert (attribution.external_account, attribution.via) == (
        "111122223333",
        "assume_role",
    )


@pytest.mark.parametrize(
    "ours", [[], ["999999999999"]], ids=["no_organization", "role_not_ours"]
)
def test_attribute_assume_role_not_provably_into_ours_is_unknown(
    load_record: LoadRecord, ours: list[str]
) -> None:
    attributor = _attributor(ours)

    assert attributor.attribute(load_record(NO_MFA)).kind == "unknown"


def test_attribute_assume_role_into_party_role_by_other_account_is_unregistered(
    load_record: LoadRecord,
) -> None:
    attributor = _attributor(
        ["123456789012"],
        {
            "id": "acme",
            "accounts": [VENDOR],
            "roles": ["arn:aws:iam::123456789012:role/DevRole"],
        },
    )

    attribution = attributor.attribute(load_record(NO_MFA))

    assert attribution.kind == "unregistered_external"


def test_attribute_assume_role_into_role_only_party_is_third_party(
    load_record: LoadRecord,
) -> None:
    attributor = _attributor(
        ["123456789012"],
        {"id": "acme", "roles": ["arn:aws:iam::123456789012:role/DevRole"]},
    )

    attribution = attributor.attribute(load_record(NO_MFA))

    assert attribution.kind == "third_party"
    assert attribution.external_account == "111122223333"


def test_attribute_session_matched_by_returned_access_key(
    raw_record: RawRecord, load_record: LoadRecord
) -> None:
    attributor = _attributor(["307578594326"], {"id": "acme", "accounts": [VENDOR]})
    assume = record_from_dict(_from_vendor(raw_record(LEAVE_ORG, 0)))

    attributor.attribute(assume)
    attribution = attributor.attribute(load_record(LEAVE_ORG, 1))

    assert attribution.kind == "third_party"
    assert (attribution.external_account, attribution.via) == (VENDOR, "session")
    assert len(attributor) == 1


def test_attribute_session_without_assume_role_is_ours(load_record: LoadRecord) -> None:
    attributor = _attributor(["307578594326"], {"id": "acme", "accounts": [VENDOR]})

    assert attributor.attribute(load_record(LEAVE_ORG, 1)).kind == "ours"


def test_attribute_session_matched_by_registered_issuer_role(
    load_record: LoadRecord,
) -> None:
    attributor = _attributor(
        ["457448411975"],
        {"id": "acme", "accounts": [VENDOR], "roles": [PASSWORD_DATA_ROLE]},
    )

    attribution = attributor.attribute(load_record(PASSWORD_DATA, 2))

    assert attribution.kind == "third_party"
    assert (attribution.external_account, attribution.via) == (VENDOR, "session")


def test_attribute_role_chaining_from_party_session_is_remembered(
    raw_record: RawRecord, load_record: LoadRecord
) -> None:
    """An AssumeRole made with a vendor's session hands its new key to the vendor."""
    attributor = _attributor(
        ["457448411975"], {"id": "acme", "roles": [PASSWORD_DATA_ROLE]}
    )
    chained = raw_record(PASSWORD_DATA, 0)
    chained["userIdentity"] = raw_record(PASSWORD_DATA, 2)["userIdentity"]

    first = attributor.attribute(record_from_dict(chained))

    assert (first.kind, first.via) == ("third_party", "session")
    assert len(attributor) == 1


@pytest.mark.parametrize(
    ("event_time", "kind"),
    [
        ("2014-07-18T15:30:00Z", "third_party"),
        ("2014-07-18T16:07:39Z", "unknown"),
        ("2016-11-14T17:25:45Z", "unknown"),
    ],
    ids=["inside_expiration", "at_expiration", "years_later_as_recorded"],
)
def test_attribute_session_expires_with_its_credentials(
    load_record: LoadRecord, event_time: str, kind: str
) -> None:
    """The awsdocs session uses the key the awsdocs AssumeRole returned (1 h)."""
    attributor = _attributor(
        ["111122223333"], {"id": "acme", "accounts": ["777788889999"]}
    )
    attributor.attribute(load_record(CROSS_ACCOUNT, 1))

    session = load_record(
        "awsdocs_iam_delete_bucket_session.json", eventTime=event_time
    )

    assert attributor.attribute(session).kind == kind


def test_attribute_expired_sessions_are_evicted_as_the_watermark_passes(
    load_record: LoadRecord,
) -> None:
    """The engine drops sessions once its watermark (by event time) passes them."""
    engine = DetectionEngine(
        parse_policy(
            {
                "organization": {"accounts": ["111122223333"]},
                "third_parties": [{"id": "acme", "accounts": ["777788889999"]}],
            }
        )
    )
    engine.process(load_record(CROSS_ACCOUNT, 1))

    engine.process(load_record(NO_MFA))

    assert engine.state_sizes()["session"] == 0


@pytest.mark.parametrize(
    ("parameters", "lifetime"),
    [
        ({"durationSeconds": 900}, timedelta(minutes=15)),
        ({"durationSeconds": "bad"}, timedelta(hours=12)),
        ({}, timedelta(hours=12)),
    ],
    ids=["duration", "bad_duration", "nothing"],
)
def test_attribute_session_without_expiration_uses_duration_else_12h(
    raw_record: RawRecord,
    load_record: LoadRecord,
    parameters: dict[str, Any],
    lifetime: timedelta,
) -> None:
    """Without `expiration`, the AssumeRole's durationSeconds, else 12 h, applies."""
    attributor = _attributor(
        ["111122223333"], {"id": "acme", "accounts": ["777788889999"]}
    )
    assume = raw_record(CROSS_ACCOUNT, 1)
    del assume["responseElements"]["credentials"]["expiration"]
    assume["requestParameters"].update(parameters)
    attributor.attribute(record_from_dict(assume))
    expires = datetime.fromisoformat("2014-07-18T15:07:39+00:00") + lifetime
    session = "awsdocs_iam_delete_bucket_session.json"

    before = load_record(session, eventTime=_z(expires - timedelta(seconds=1)))
    at = load_record(session, eventTime=_z(expires))

    assert attributor.attribute(before).kind == "third_party"
    assert attributor.attribute(at).kind == "unknown"


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _assume_with_key(raw_record: RawRecord, key: str) -> CloudTrailRecord:
    assume = raw_record(CROSS_ACCOUNT, 1)
    assume["responseElements"]["credentials"]["accessKeyId"] = key
    return record_from_dict(assume)


def _session_with_key(
    raw_record: RawRecord, key: str, event_time: str = "2014-07-18T15:30:00Z"
) -> CloudTrailRecord:
    session = raw_record("awsdocs_iam_delete_bucket_session.json", eventTime=event_time)
    session["userIdentity"]["accessKeyId"] = key
    return record_from_dict(session)


@pytest.mark.parametrize("max_sessions", [1, 2])
def test_attribute_sessions_are_capped_oldest_first(
    raw_record: RawRecord, max_sessions: int
) -> None:
    """Three sessions (keys derived) under a cap keep only the newest ones."""
    attributor = _attributor(
        ["111122223333"],
        {"id": "acme", "accounts": ["777788889999"]},
        max_sessions=max_sessions,
    )
    for key in ("ASIAFIRST", "ASIASECOND", "ASIATHIRD"):
        attributor.attribute(_assume_with_key(raw_record, key))

    first = attributor.attribute(_session_with_key(raw_record, "ASIAFIRST"))
    third = attributor.attribute(_session_with_key(raw_record, "ASIATHIRD"))

    assert len(attributor) == max_sessions
    assert (first.kind, third.kind) == ("unknown", "third_party")


def test_attribute_capped_sessions_still_expire(raw_record: RawRecord) -> None:
    engine = DetectionEngine(
        parse_policy(
            {
                "organization": {"accounts": ["111122223333"]},
                "third_parties": [{"id": "acme", "accounts": ["777788889999"]}],
            }
        ),
        max_sessions=2,
    )
    for key in ("ASIAFIRST", "ASIASECOND", "ASIATHIRD"):
        engine.process(_assume_with_key(raw_record, key))

    late = engine.process(
        _session_with_key(raw_record, "ASIATHIRD", "2014-07-18T17:00:00Z")
    )

    assert late == []
    assert engine.state_sizes()["session"] == 0


@pytest.mark.parametrize(
    ("expiration", "kind"),
    [
        ("2014-07-18T15:20:00Z", "unknown"),
        ("2014-07-18 15:40:00", "third_party"),
        ("Jul 18, 2014, 3:20:00 PM", "unknown"),
        ("2099-01-01T00:00:00Z", "third_party"),
    ],
    ids=["iso_passed", "iso_space", "cloudtrail_passed", "beyond_12h_capped"],
)
def test_attribute_expiration_formats(
    raw_record: RawRecord, expiration: str, kind: str
) -> None:
    """The expiration is derived; the session call is at 15:30 (AssumeRole 15:07)."""
    attributor = _attributor(
        ["111122223333"], {"id": "acme", "accounts": ["777788889999"]}
    )
    assume = raw_record(CROSS_ACCOUNT, 1)
    assume["responseElements"]["credentials"]["expiration"] = expiration
    attributor.attribute(record_from_dict(assume))

    session = attributor.attribute(
        _session_with_key(raw_record, "AKIAQRSTUVWXYZEXAMPLE")
    )

    assert session.kind == kind


@pytest.mark.parametrize(
    "path",
    [("eventTime",), ("responseElements", "credentials", "accessKeyId")],
    ids=["no_time", "no_key"],
)
def test_attribute_assume_role_without_time_or_key_is_not_remembered(
    raw_record: RawRecord, path: tuple[str, ...]
) -> None:
    attributor = _attributor(
        ["111122223333"], {"id": "acme", "accounts": ["777788889999"]}
    )
    assume = raw_record(CROSS_ACCOUNT, 1)
    parent = assume
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]

    attribution = attributor.attribute(record_from_dict(assume))

    assert attribution.kind == "third_party"
    assert len(attributor) == 0


@pytest.mark.parametrize(
    ("parties", "kind"),
    [
        ([{"id": "acme", "accounts": ["111122223333"]}], "third_party"),
        ([], "unregistered_external"),
    ],
)
def test_attribute_direct_cross_account_call(
    load_record: LoadRecord, parties: list[dict[str, Any]], kind: str
) -> None:
    attributor = _attributor(["444455556666"], *parties)

    attribution = attributor.attribute(
        load_record("awsdocs_s3_list_buckets_cross_account.json")
    )

    assert (attribution.kind, attribution.via) == (kind, "direct")
    assert attribution.external_account == "111122223333"


def test_attribute_direct_call_into_foreign_account_is_unknown(
    load_record: LoadRecord,
) -> None:
    attributor = _attributor(["999999999999"])

    attribution = attributor.attribute(
        load_record("awsdocs_s3_list_buckets_cross_account.json")
    )

    assert attribution.kind == "unknown"


@pytest.mark.parametrize(
    "name",
    [
        "otrf_ec2_assume_role_service.json",
        "awsdocs_s3_batch_job_status.json",
    ],
)
def test_attribute_aws_service_is_not_a_third_party(
    load_record: LoadRecord, name: str
) -> None:
    attributor = _attributor(
        ["123456789123", "123412341234"], {"id": "acme", "accounts": ["123456789012"]}
    )

    assert attributor.attribute(load_record(name)).kind == "aws_service"


def test_attribute_service_invoked_for_our_account_is_aws_service(
    load_record: LoadRecord,
) -> None:
    attributor = _attributor(["111122223333"])
    record = load_record(CROSS_ACCOUNT, 0)
    raw = dict(record.raw)
    raw["userIdentity"] = {
        "accountId": "111122223333",
        "invokedBy": "ec2.amazonaws.com",
    }

    assert attributor.attribute(record_from_dict(raw)).kind == "aws_service"


def test_attribute_service_name_source_without_account_is_aws_service(
    raw_record: RawRecord,
) -> None:
    """The S3 Batch record with its eventType removed still reads as S3's own."""
    attributor = _attributor(["123412341234"])
    raw = raw_record("awsdocs_s3_batch_job_status.json")
    del raw["eventType"]
    del raw["userIdentity"]["accountId"]

    assert attributor.attribute(record_from_dict(raw)).kind == "aws_service"


def test_attribute_own_principal_is_ours(load_record: LoadRecord) -> None:
    attributor = _attributor(["143434273843"], {"id": "acme", "accounts": [VENDOR]})

    attribution = attributor.attribute(load_record("stratus_cloudtrail_stop.json"))

    assert attribution.kind == "ours"


def test_attribute_no_identity_is_unknown(raw_record: RawRecord) -> None:
    attributor = _attributor(["143434273843"])

    record = record_from_dict(
        raw_record("stratus_cloudtrail_stop.json", userIdentity=None)
    )

    assert attributor.attribute(record).kind == "unknown"


@pytest.mark.parametrize(
    ("ours", "changes", "waits"),
    [
        (["307578594326"], {}, True),
        ([], {}, False),
        (["307578594326"], {"accessKeyId": "AKIA36EV31F1RB3OA8IG"}, False),
        (["307578594326"], {"accessKeyId": None}, False),
        (["307578594326"], {"type": "IAMUser"}, False),
        (["111122223333"], {}, False),
    ],
    ids=[
        "unknown_session",
        "no_org",
        "long_term_key",
        "no_key",
        "iam_user",
        "not_ours",
    ],
)
def test_attribute_waiting_key_only_for_unknown_sessions_in_our_accounts(
    raw_record: RawRecord, ours: list[str], changes: dict[str, Any], waits: bool
) -> None:
    """The stratus LeaveOrganization call, made with a session nobody saw open."""
    attributor = _attributor(ours, {"id": "acme", "accounts": [VENDOR]})
    call = raw_record(LEAVE_ORG, 1)
    call["userIdentity"].update(changes)

    key = attributor.waiting_key(record_from_dict(call))

    assert (key is not None) == waits
