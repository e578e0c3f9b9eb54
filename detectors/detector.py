"""The Detector protocol and the Finding every detector returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from detectors.attribution import Attribution
from service.records import CloudTrailRecord

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class Finding:
    """One detector's verdict on one record.

    Findings with the same `dedup_key` inside the store's window are merged into
    one alert. The key never holds secrets (external IDs are not copied here).
    """

    detector: str
    severity: Severity
    title: str
    dedup_key: str
    third_party: str | None
    account_id: str | None
    actor: str | None
    source_ip: str | None
    region: str | None
    event_time: datetime | None
    event_id: str | None
    action: str
    details: Mapping[str, Any] = field(default_factory=dict)


class Detector(Protocol):
    """A pure check: one attributed record in, zero or more findings out."""

    id: str

    def check(
        self, record: CloudTrailRecord, attribution: Attribution
    ) -> list[Finding]: ...
