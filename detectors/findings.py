"""Building Findings the same way in every detector: actor, title, dedup key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectors.attribution import Attribution, role_account
from detectors.detector import Finding, Severity
from service.records import CloudTrailRecord


def actor_of(record: CloudTrailRecord) -> str | None:
    """The principal behind a record: its ARN, else principal id, else account."""
    identity = record.identity
    return identity.arn or identity.principal_id or identity.account_id


def account_of(record: CloudTrailRecord) -> str | None:
    """The account acted in: the recipient, else the assumed role's, else the
    caller's (the role owner's copy of an AssumeRole may lack recipientAccountId)."""
    return (
        record.recipient_account_id
        or role_account(record)
        or record.identity.account_id
    )


def make_finding(
    detector: str,
    severity: Severity,
    record: CloudTrailRecord,
    attribution: Attribution,
    *,
    title: str,
    distinct: str,
    details: Mapping[str, Any],
) -> Finding:
    """A Finding for `record`, keyed so repeats of the same behaviour merge.

    `distinct` is what separates one behaviour from another for the same actor
    (an action, an address, a role); the key never holds an event id or time.
    """
    party = attribution.third_party
    outsider = party.id if party is not None else attribution.external_account
    actor = actor_of(record)
    account = account_of(record)
    key = "|".join((detector, outsider or "-", account or "-", actor or "-", distinct))
    base: dict[str, Any] = {"attribution": attribution.via or attribution.kind}
    if attribution.external_account is not None:
        base["external_account"] = attribution.external_account
    if record.error_code is not None:
        base["error_code"] = record.error_code
    return Finding(
        detector=detector,
        severity=severity,
        title=title,
        dedup_key=key,
        third_party=party.id if party is not None else None,
        account_id=account,
        actor=actor,
        source_ip=record.source_ip,
        region=record.aws_region,
        event_time=record.event_time,
        event_id=record.event_id,
        action=record.action,
        details={**base, **details},
    )
