"""DetectionEngine: attribute each record, then run the enabled detectors on it.

One engine holds the state of one Kafka partition (or one replay run). Everything
per-policy is compiled at construction, so `process` does no parsing of its own.
"""

from __future__ import annotations

from typing import Protocol

from detectors.action_not_allowed import ActionNotAllowed
from detectors.attribution import AttributionKind, Attributor
from detectors.detector import Detector, Finding
from detectors.external_id_mismatch import ExternalIdMismatch
from detectors.high_risk_action import HighRiskAction
from detectors.mfa_missing import MfaMissing
from detectors.outside_access_window import OutsideAccessWindow
from detectors.outside_business_hours import OutsideBusinessHours
from detectors.source_network_not_allowed import SourceNetworkNotAllowed
from detectors.third_parties import Policy
from detectors.unregistered_external_account import UnregisteredExternalAccount
from service.records import CloudTrailRecord


class _BuiltIn(Detector, Protocol):
    watches: AttributionKind


class _BuiltInType(Protocol):
    id: str

    def __call__(self, policy: Policy) -> _BuiltIn: ...


DETECTOR_TYPES: tuple[_BuiltInType, ...] = (
    UnregisteredExternalAccount,
    ExternalIdMismatch,
    MfaMissing,
    SourceNetworkNotAllowed,
    OutsideBusinessHours,
    OutsideAccessWindow,
    HighRiskAction,
    ActionNotAllowed,
)


class DetectionEngine:
    """Runs the enabled detectors, in order, over attributed records."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.detector_ids: tuple[str, ...] = tuple(t.id for t in DETECTOR_TYPES)
        self.attributor = Attributor(policy)
        enabled = [
            t(policy) for t in DETECTOR_TYPES if policy.detectors.get(t.id).enabled
        ]
        # Detectors only ever look at one kind of record: group them by that kind.
        self._by_kind: dict[AttributionKind, tuple[Detector, ...]] = {
            kind: tuple(d for d in enabled if d.watches == kind)
            for kind in ("third_party", "unregistered_external")
        }

    @property
    def enabled_ids(self) -> tuple[str, ...]:
        """The ids of the detectors that run, in order."""
        return tuple(
            i for i in self.detector_ids if self.policy.detectors.get(i).enabled
        )

    def process(self, record: CloudTrailRecord) -> list[Finding]:
        """Attribute one record and return every finding the detectors make."""
        attribution = self.attributor.attribute(record)
        detectors = self._by_kind.get(attribution.kind)
        if not detectors:
            return []

        findings: list[Finding] = []
        for detector in detectors:
            findings.extend(detector.check(record, attribution))
        return findings
