"""high-risk-action: a third party attempts an action on the high-risk list.

Watches every third-party record against the configured IAM-style patterns
(identity changes, logging off, key deletion, data sharing). Denied attempts
count too: the finding's details say whether the call succeeded.
"""

from __future__ import annotations

from detectors.actions import ActionMatcher
from detectors.attribution import Attribution, AttributionKind
from detectors.detector import Finding
from detectors.findings import make_finding
from detectors.third_parties import Policy
from service.records import CloudTrailRecord


class HighRiskAction:
    id = "high-risk-action"
    watches: AttributionKind = "third_party"

    def __init__(self, policy: Policy) -> None:
        self.severity = policy.detectors.severity(self.id)
        self._matcher = ActionMatcher(policy.detectors.high_risk_action.actions)

    def check(
        self, record: CloudTrailRecord, attribution: Attribution
    ) -> list[Finding]:
        party = attribution.third_party
        if party is None:
            return []
        pattern = self._matcher.first_match(record.action)
        if pattern is None:
            return []

        outcome = _outcome(record.error_code)
        name = party.display_name
        if outcome == "succeeded":
            title = f"{name} called high-risk {record.action}"
        else:
            title = f"{name} attempted high-risk {record.action} ({outcome})"
        return [
            make_finding(
                self.id,
                self.severity,
                record,
                attribution,
                title=title,
                distinct=record.action,
                details={
                    "outcome": outcome,
                    "succeeded": record.succeeded,
                    "pattern": pattern,
                },
            )
        ]


def _outcome(error_code: str | None) -> str:
    if error_code is None:
        return "succeeded"
    lowered = error_code.lower()
    if "denied" in lowered or "unauthorized" in lowered or "forbidden" in lowered:
        return "denied"
    return "failed"
