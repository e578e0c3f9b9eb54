"""outside-access-window: third-party activity before or after its contract.

Watches every third-party record whose party sets `valid_from` or `valid_until`;
access before onboarding or after offboarding should not exist at all. Records
without a time are skipped.
"""

from __future__ import annotations

from detectors.attribution import Attribution, AttributionKind
from detectors.detector import Finding
from detectors.findings import make_finding
from detectors.third_parties import Policy
from service.records import CloudTrailRecord


class OutsideAccessWindow:
    id = "outside-access-window"
    watches: AttributionKind = "third_party"

    def __init__(self, policy: Policy) -> None:
        self.severity = policy.detectors.severity(self.id)

    def check(
        self, record: CloudTrailRecord, attribution: Attribution
    ) -> list[Finding]:
        party = attribution.third_party
        when = record.event_time
        if party is None or when is None:
            return []

        if party.valid_from is not None and when < party.valid_from:
            side, bound = "before", party.valid_from
        elif party.valid_until is not None and when > party.valid_until:
            side, bound = "after", party.valid_until
        else:
            return []
        field = "valid_from" if side == "before" else "valid_until"
        return [
            make_finding(
                self.id,
                self.severity,
                record,
                attribution,
                title=(
                    f"{party.display_name} called {record.action} {side} its "
                    "access window"
                ),
                distinct=side,
                details={field: bound.isoformat()},
            )
        ]
