"""external-id-mismatch: a third party assumed a role without its external ID.

Watches AssumeRole by a registered third party whose policy sets
`external_id_sha256`; a missing or different external ID is the confused-deputy
risk the external ID exists to stop. The ID and its hash never reach a finding.
"""

from __future__ import annotations

import hashlib
import hmac

from detectors.attribution import Attribution, AttributionKind, role_arn
from detectors.detector import Finding
from detectors.findings import make_finding
from detectors.third_parties import Policy
from service.records import CloudTrailRecord


class ExternalIdMismatch:
    id = "external-id-mismatch"
    watches: AttributionKind = "third_party"

    def __init__(self, policy: Policy) -> None:
        self.severity = policy.detectors.severity(self.id)

    def check(
        self, record: CloudTrailRecord, attribution: Attribution
    ) -> list[Finding]:
        party = attribution.third_party
        if (
            party is None
            or party.external_id_sha256 is None
            or attribution.via != "assume_role"
            or not record.request_parameters
        ):
            return []

        given = record.request_parameters.get("externalId")
        if not isinstance(given, str) or not given:
            problem, wording = "missing", "without external ID"
        elif not hmac.compare_digest(
            hashlib.sha256(given.encode()).hexdigest(), party.external_id_sha256
        ):
            problem, wording = "mismatch", "with another external ID"
        else:
            return []

        role = role_arn(record) or "unknown role"
        return [
            make_finding(
                self.id,
                self.severity,
                record,
                attribution,
                title=f"{party.display_name} assumed {role} {wording}",
                distinct=f"{role}|{problem}",
                details={"role_arn": role, "problem": problem},
            )
        ]
