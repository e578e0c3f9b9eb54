"""outside-business-hours: third-party activity outside the party's hours.

Watches every third-party record whose party sets `hours`, reading `eventTime`
in the party's time zone (daylight saving included). Work at odd hours is a
common sign of stolen vendor credentials. Records without a time are skipped.
"""

from __future__ import annotations

from datetime import datetime, time

from detectors.attribution import Attribution, AttributionKind
from detectors.detector import Finding
from detectors.findings import make_finding
from detectors.third_parties import WEEKDAYS, BusinessHours, Policy
from service.records import CloudTrailRecord


class OutsideBusinessHours:
    id = "outside-business-hours"
    watches: AttributionKind = "third_party"

    def __init__(self, policy: Policy) -> None:
        self.severity = policy.detectors.severity(self.id)

    def check(
        self, record: CloudTrailRecord, attribution: Attribution
    ) -> list[Finding]:
        party = attribution.third_party
        if party is None or party.hours is None or record.event_time is None:
            return []

        hours = party.hours
        local = record.event_time.astimezone(hours.zone)
        if within_hours(local, hours):
            return []
        return [
            make_finding(
                self.id,
                self.severity,
                record,
                attribution,
                title=(
                    f"{party.display_name} called {record.action} outside "
                    "business hours"
                ),
                distinct=record.action,
                details={
                    "local_time": local.isoformat(),
                    "timezone": hours.timezone,
                    "hours": _describe(hours),
                },
            )
        ]


def within_hours(local: datetime, hours: BusinessHours) -> bool:
    """Whether a local time falls in the hours; `end < start` runs overnight."""
    day = WEEKDAYS[local.weekday()]
    now = local.time()
    if hours.start == hours.end:
        return day in hours.days
    if hours.start < hours.end:
        return day in hours.days and hours.start <= now < hours.end
    # Overnight: the late part belongs to today, the early part to yesterday.
    yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
    return (day in hours.days and now >= hours.start) or (
        yesterday in hours.days and now < hours.end
    )


def _describe(hours: BusinessHours) -> str:
    return f"{','.join(hours.days)} {_hhmm(hours.start)}-{_hhmm(hours.end)}"


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")
