"""unregistered-external-account: an account outside the registry acts in ours.

Watches AssumeRole into our accounts and direct cross-account calls whose caller
is neither ours nor a registered third party: access nobody has vouched for.
"""

from __future__ import annotations

from detectors.attribution import Attribution, AttributionKind, role_arn
from detectors.detector import Finding
from detectors.findings import make_finding
from detectors.third_parties import Policy
from service.records import CloudTrailRecord


class UnregisteredExternalAccount:
    id = "unregistered-external-account"
    watches: AttributionKind = "unregistered_external"

    def __init__(self, policy: Policy) -> None:
        self.severity = policy.detectors.severity(self.id)

    def check(
        self, record: CloudTrailRecord, attribution: Attribution
    ) -> list[Finding]:
        if attribution.kind != "unregistered_external":
            return []

        account = attribution.external_account or "unknown"
        if attribution.via == "assume_role":
            role = role_arn(record) or "unknown role"
            title = f"Unregistered external account {account} assumed {role}"
            distinct, details = role, {"role_arn": role}
        else:
            title = f"Unregistered external account {account} called {record.action}"
            distinct, details = record.action, {}
        return [
            make_finding(
                self.id,
                self.severity,
                record,
                attribution,
                title=title,
                distinct=distinct,
                details=details,
            )
        ]
