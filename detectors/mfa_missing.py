"""mfa-missing: a third party that must use MFA assumed a role or acted without it.

Watches AssumeRole (no `serialNumber`/`tokenCode`) and session or direct calls
(`mfaAuthenticated` not true) of third parties with `require_mfa`.
"""

from __future__ import annotations

from detectors.attribution import Attribution, AttributionKind
from detectors.detector import Finding
from detectors.findings import make_finding
from detectors.third_parties import Policy
from service.records import CloudTrailRecord


class MfaMissing:
    id = "mfa-missing"
    watches: AttributionKind = "third_party"

    def __init__(self, policy: Policy) -> None:
        self.severity = policy.detectors.severity(self.id)

    def check(
        self, record: CloudTrailRecord, attribution: Attribution
    ) -> list[Finding]:
        party = attribution.third_party
        if party is None or not party.require_mfa:
            return []

        if attribution.via == "assume_role":
            parameters = record.request_parameters
            # A denied AssumeRole may log no parameters at all: nothing to judge.
            if not parameters or "serialNumber" in parameters:
                return []
            if "tokenCode" in parameters:
                return []
        elif record.identity.mfa_authenticated is True:
            return []

        via = attribution.via or "direct"
        return [
            make_finding(
                self.id,
                self.severity,
                record,
                attribution,
                title=f"{party.display_name} called {record.action} without MFA",
                distinct=via,
                details={
                    "mfa_authenticated": record.identity.mfa_authenticated is True
                },
            )
        ]
