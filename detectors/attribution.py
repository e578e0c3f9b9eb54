"""Attribution: does a record belong to a third party, to us, or to an AWS service?

The Attributor keeps the sessions STS opened (by access key id, in a SessionBook
the engine expires by event time), so later calls can be matched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from detectors.sessions import DEFAULT_MAX_SESSIONS, SessionBook, opened_session
from detectors.state import EngineCounters
from service.records import CloudTrailRecord

if TYPE_CHECKING:
    from detectors.third_parties import Policy, ThirdParty

AttributionKind = Literal[
    "ours", "aws_service", "third_party", "unregistered_external", "unknown"
]
Via = Literal["assume_role", "session", "direct"]


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


class Attributor:
    """Attributes records of one partition, remembering the sessions STS opened.

    Calls are matched to a third party by the access key its AssumeRole returned,
    or by the session issuer being a registered role. Expiry is the engine's job:
    it drops sessions from `sessions` as its watermark advances.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        counters: EngineCounters | None = None,
    ) -> None:
        self._ours = frozenset(policy.organization.accounts)
        self._parties = {p.id: p for p in policy.third_parties}
        self._by_account = {a: p for p in policy.third_parties for a in p.accounts}
        self._by_role = {r: p for p in policy.third_parties for r in p.roles}
        self.sessions = SessionBook(max_sessions)
        self._sessions_by_key = self.sessions.by_key
        self.counters = counters if counters is not None else EngineCounters()
        # Only a third party's AssumeRole can make an unknown session theirs, and
        # only calls in our accounts wait for one (see `waiting_key`).
        self.holds_sessions = bool(self._parties) and bool(self._ours)

    def __len__(self) -> int:
        """The number of remembered sessions."""
        return len(self.sessions)

    def attribute(self, record: CloudTrailRecord) -> Attribution:
        """Decide who a record belongs to, remembering any session it opens."""
        attribution = self._attribute(record)
        if record.event_source == "sts.amazonaws.com":
            self._remember(record, attribution)
        return attribution

    def waiting_key(self, record: CloudTrailRecord) -> str | None:
        """The access key of an unknown session a record's attribution depends on.

        That is a call in our accounts with temporary credentials ("ASIA") that no
        STS record has returned yet and whose issuer is not a registered role: its
        AssumeRole, still on its way, may show it to be a third party's. Every
        other record is attributed the same whatever arrives later.
        """
        identity = record.identity
        if identity.type != "AssumedRole" or not self.holds_sessions:
            return None
        key = identity.access_key_id
        if key is None or not key.startswith("ASIA") or key in self._sessions_by_key:
            return None
        if identity.session_issuer_arn in self._by_role:
            return None
        if identity.account_id not in self._ours or _is_service_event(record):
            return None
        return key

    def session_attribution(self, party: object, account: object) -> Attribution | None:
        """Who holds a restored session: a registered party's id, else nobody."""
        third_party = self._parties.get(party) if isinstance(party, str) else None
        if third_party is None:
            return None
        external = account if isinstance(account, str) else None
        return Attribution("third_party", third_party, external, "session")

    def _attribute(self, record: CloudTrailRecord) -> Attribution:
        identity = record.identity
        if identity.type == "AWSService" or _is_service_event(record):
            return AWS_SERVICE

        session = self._match_session(record)
        if session is not None:
            return session

        if _is_assume_role(record):
            assumed = self._assume_role(record)
            if assumed is not None:
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
        session = self._sessions_by_key.get(key) if key is not None else None
        if session is not None and session.covers(record.event_time):
            holder = session.attribution
            if holder is not None:
                return holder
        issuer = identity.session_issuer_arn
        party = self._by_role.get(issuer) if issuer is not None else None
        if party is None:
            return None
        if key is not None and session is None:
            # Its AssumeRole was never seen here: most likely on another partition.
            self.counters.session_elsewhere += 1
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
        holder: Attribution | None = None
        if attribution.kind == "third_party" and record.event_name == "AssumeRole":
            holder = Attribution(
                "third_party",
                attribution.third_party,
                attribution.external_account,
                "session",
            )
        elif not self.holds_sessions:
            return

        opened = opened_session(record, holder)
        if opened is not None:
            self.sessions.open(*opened)


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
