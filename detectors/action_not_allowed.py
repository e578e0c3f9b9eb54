"""action-not-allowed: a third party performs an action outside its allowance.

Watches every third-party record whose party sets `allowed_actions` (IAM-style
patterns). AssumeRole into one of the party's own roles is how it gets in, so
that alone is never outside.
"""

from __future__ import annotations

from detectors.actions import ActionMatcher
from detectors.attribution import Attribution, AttributionKind, role_arn
from detectors.detector import Finding
from detectors.findings import make_finding
from detectors.third_parties import Policy
from service.records import CloudTrailRecord


class ActionNotAllowed:
    id = "action-not-allowed"
    watches: AttributionKind = "third_party"

    def __init__(self, policy: Policy) -> None:
        self.severity = policy.detectors.severity(self.id)
        self._allowed = {
            party.id: ActionMatcher(party.allowed_actions)
            for party in policy.third_parties
            if party.allowed_actions is not None
        }

    def check(
        self, record: CloudTrailRecord, attribution: Attribution
    ) -> list[Finding]:
        party = attribution.third_party
        if party is None:
            return []
        allowed = self._allowed.get(party.id)
        if allowed is None or allowed.matches(record.action):
            return []
        if attribution.via == "assume_role" and (
            not party.roles or role_arn(record) in party.roles
        ):
            return []

        return [
            make_finding(
                self.id,
                self.severity,
                record,
                attribution,
                title=f"{party.display_name} called {record.action}, not allowed",
                distinct=record.action,
                details={"allowed_actions": list(allowed.patterns)},
            )
        ]
