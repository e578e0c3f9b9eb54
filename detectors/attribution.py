"""Attribution: does a record belong to a third party, to us, or to an AWS service?

The Attributor keeps the sessions that third parties opened with AssumeRole (by
access key id, bounded and expired by event time), so later calls can be matched.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from service.records import CloudTrailRecord, parse_event_time

if TYPE_CHECKING:
    from detectors.third_parties import Policy, ThirdParty

AttributionKind = Literal[
    "ours", "aws_service", "third_party", "unregistered_external", "unknown"
]
Via = Literal["assume_role", "session", "direct"]

# AssumeRole accepts at most 12 hours (DurationSeconds 43200).
MAX_SESSION = timedelta(hours=12)
DEFAULT_MAX_SESSIONS = 100_000


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who a record belongs to, and how that was decided."""

    kind: AttributionKind
    third_party: ThirdParty | None = None
    external_account: str | None = None
    via: Via | None = None


OURS = Attribution("ours")
AWS_SERVICE = Attribution("aws_service")
UNKNOWN = Attribution("unknown")


@dataclass(slots=True)
class _Session:
    attribution: Attribution
    expires: datetime


class Attributor:
    """Attributes records of one partition, remembering third-party sessions.

    Sessions are matched by the access key id an AssumeRole returned, or by the
    session issuer being a registered role. At most `max_sessions` are kept; the
    oldest go first, and any whose credentials expired (by event time) are dropped.
    """

    def __init__(
        self, policy: Policy, *, max_sessions: int = DEFAULT_MAX_SESSIONS
    ) -> None:
        self._ours = frozenset(policy.organization.accounts)
        self._by_account = {a: p for p in policy.third_parties for a in p.accounts}
        self._by_role = {r: p for p in policy.third_parties for r in p.roles}
        self._max_sessions = max_sessions
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._expiries: list[tuple[datetime, str]] = []
        self._clock: datetime | None = None

    def __len__(self) -> int:
        """The number of remembered sessions."""
        return len(self._sessions)

    def attribute(self, record: CloudTrailRecord) -> Attribution:
        """Decide who a record belongs to, remembering any session it opens."""
        self._advance(record.event_time)
        identity = record.identity
        if identity.type == "AWSService" or _is_service_event(record):
            return AWS_SERVICE

        session = self._match_session(record)
        if session is not None:
            self._remember(record, session)
            return session

        if _is_assume_role(record):
            assumed = self._assume_role(record)
            if assumed is not None:
                self._remember(record, assumed)
                return assumed

        account = identity.account_id
        if account is not None and account in self._ours:
            if identity.invoked_by and identity.invoked_by.endswith(".amazonaws.com"):
                return AWS_SERVICE
            return OURS
        if account is None and _is_service_name(record.source_ip):
            return AWS_SERVICE
        return self._direct(record)

    def _match_session(self, record: CloudTrailRecord) -> Attribution | None:
        identity = record.identity
        key = identity.access_key_id
        if key is not None:
            remembered = self._sessions.get(key)
            if remembered is not None and not self._expired(remembered, record):
                return remembered.attribution
        issuer = identity.session_issuer_arn
        party = self._by_role.get(issuer) if issuer is not None else None
        if party is None:
            return None
        return Attribution("third_party", party, _only_account(party), "session")

    def _assume_role(self, record: CloudTrailRecord) -> Attribution | None:
        caller = record.identity.account_id
        target = role_account(record) or record.recipient_account_id
        if caller is None or caller in self._ours:
            return None

        party = self._by_account.get(caller)
        role = role_arn(record)
        role_party = self._by_role.get(role) if role is not None else None
        if role_party is not None and (not role_party.accounts or party is role_party):
            party = role_party
        if party is not None and (not self._ours or target in self._ours):
            return Attribution("third_party", party, caller, "assume_role")
        if self._ours and target in self._ours:
            return Attribution("unregistered_external", None, caller, "assume_role")
        return None

    def _direct(self, record: CloudTrailRecord) -> Attribution:
        caller = record.identity.account_id
        target = record.recipient_account_id
        if caller is None or (target is not None and target == caller):
            return UNKNOWN
        inside = target in self._ours if target is not None else False
        party = self._by_account.get(caller)
        if party is not None and (inside or (not self._ours and target is not None)):
            return Attribution("third_party", party, caller, "direct")
        if inside:
            return Attribution("unregistered_external", None, caller, "direct")
        return UNKNOWN

    def _remember(self, record: CloudTrailRecord, attribution: Attribution) -> None:
        if not _is_assume_role(record) or attribution.kind != "third_party":
            return
        credentials = _credentials(record)
        started = record.event_time or self._clock
        if credentials is None or started is None:
            return

        key, expiration = credentials
        expires = _expiry(record, expiration, started)
        self._sessions[key] = _Session(
            Attribution(
                "third_party",
                attribution.third_party,
                attribution.external_account,
                "session",
            ),
            expires,
        )
        self._sessions.move_to_end(key)
        heapq.heappush(self._expiries, (expires, key))
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        if len(self._expiries) > 2 * self._max_sessions:
            self._expiries = [(s.expires, k) for k, s in self._sessions.items()]
            heapq.heapify(self._expiries)

    def _advance(self, now: datetime | None) -> None:
        if now is None or (self._clock is not None and now <= self._clock):
            return
        self._clock = now
        while self._expiries and self._expiries[0][0] <= now:
            expires, key = heapq.heappop(self._expiries)
            session = self._sessions.get(key)
            if session is not None and session.expires == expires:
                del self._sessions[key]

    def _expired(self, session: _Session, record: CloudTrailRecord) -> bool:
        now = record.event_time or self._clock
        return now is not None and now >= session.expires


def _is_assume_role(record: CloudTrailRecord) -> bool:
    return record.event_name == "AssumeRole" and record.event_source == (
        "sts.amazonaws.com"
    )


def _is_service_event(record: CloudTrailRecord) -> bool:
    return record.raw.get("eventType") == "AwsServiceEvent"


def _is_service_name(source_ip: str | None) -> bool:
    return source_ip is not None and source_ip.endswith(".amazonaws.com")


def role_arn(record: CloudTrailRecord) -> str | None:
    """The ARN of the role an AssumeRole record asked for, if it says."""
    role = record.request_parameters.get("roleArn")
    return role if isinstance(role, str) else None


def role_account(record: CloudTrailRecord) -> str | None:
    """The account that owns the role an AssumeRole record asked for."""
    role = role_arn(record)
    if role is None:
        return None
    parts = role.split(":", 5)
    return parts[4] if len(parts) == 6 and parts[4] else None


def _only_account(party: ThirdParty) -> str | None:
    return party.accounts[0] if len(party.accounts) == 1 else None


def _credentials(record: CloudTrailRecord) -> tuple[str, object] | None:
    """The access key id an AssumeRole returned, and its `expiration` value."""
    credentials = record.response_elements.get("credentials")
    if not isinstance(credentials, dict):
        return None
    key = credentials.get("accessKeyId")
    if not isinstance(key, str) or not key:
        return None
    return key, credentials.get("expiration")


def _expiry(
    record: CloudTrailRecord, expiration: object, started: datetime
) -> datetime:
    """When the returned credentials expire, at most 12 hours after `started`."""
    latest = started + MAX_SESSION
    expires = _parse_expiration(expiration)
    if expires is not None and started < expires <= latest:
        return expires
    duration = record.request_parameters.get("durationSeconds")
    if isinstance(duration, int | str) and not isinstance(duration, bool):
        try:
            seconds = int(duration)
        except ValueError:
            seconds = 0
        if seconds > 0:
            return min(started + timedelta(seconds=seconds), latest)
    return latest


def _parse_expiration(value: object) -> datetime | None:
    # CloudTrail writes "Jul 30, 2024, 9:46:15 PM" (UTC); some tools write ISO.
    if not isinstance(value, str):
        return parse_event_time(value)
    try:
        return datetime.strptime(value, "%b %d, %Y, %I:%M:%S %p").replace(tzinfo=UTC)
    except ValueError:
        return parse_event_time(value)
