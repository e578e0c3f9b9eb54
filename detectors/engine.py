"""DetectionEngine: attribute each record, then run the enabled detectors on it.

One engine holds the state of one Kafka partition (or one replay run): sessions,
the event-time watermark, the ids of records already checked and the calls held
for their AssumeRole. `take_changes` and `restore` carry that state as entries.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol

from detectors.action_not_allowed import ActionNotAllowed
from detectors.attribution import Attribution, AttributionKind, Attributor
from detectors.detector import Detector, Finding
from detectors.external_id_mismatch import ExternalIdMismatch
from detectors.high_risk_action import HighRiskAction
from detectors.mfa_missing import MfaMissing
from detectors.outside_access_window import OutsideAccessWindow
from detectors.outside_business_hours import OutsideBusinessHours
from detectors.pending import HeldRecord, PendingRecords
from detectors.seen import DEFAULT_HORIZON, SeenRecords, record_id_of
from detectors.sessions import DEFAULT_MAX_SESSIONS, returned_key
from detectors.source_network_not_allowed import SourceNetworkNotAllowed
from detectors.state import EngineCounters, StateDelta, StateEntry
from detectors.third_parties import Policy
from detectors.unregistered_external_account import UnregisteredExternalAccount
from detectors.watermark import DEFAULT_GRACE, Watermark
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
    """Runs the enabled detectors, in order, over attributed records.

    Decisions depend on eventTime and on the order of records only: a record
    older than the watermark (latest eventTime - `grace`) is late, a repeat of a
    checked record within `seen_horizon` is a duplicate, and a call whose session
    is not known yet waits (at most until the watermark passes it) for its
    AssumeRole.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        grace: timedelta = DEFAULT_GRACE,
        seen_horizon: timedelta = DEFAULT_HORIZON,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        self.policy = policy
        self.detector_ids: tuple[str, ...] = tuple(t.id for t in DETECTOR_TYPES)
        self.counters = EngineCounters()
        self.attributor = Attributor(
            policy, max_sessions=max_sessions, counters=self.counters
        )
        self.watermark = Watermark(grace)
        self._seen = SeenRecords(seen_horizon)
        self._pending = PendingRecords()
        self._seen_ids = self._seen.expiry
        self._held_ids = self._pending.held
        self._heaps = (
            self._pending.expiries.heap,
            self.attributor.sessions.expiries.heap,
            self._seen.expiries.heap,
        )
        enabled = [
            t(policy) for t in DETECTOR_TYPES if policy.detectors.get(t.id).enabled
        ]
        # Detectors only ever look at one kind of record: group them by that kind.
        kinds: tuple[AttributionKind, ...] = ("third_party", "unregistered_external")
        by_kind = {k: tuple(d for d in enabled if d.watches == k) for k in kinds}
        self._by_kind: dict[AttributionKind, tuple[Detector, ...]] = {
            kind: detectors for kind, detectors in by_kind.items() if detectors
        }

    @property
    def enabled_ids(self) -> tuple[str, ...]:
        """The ids of the detectors that run, in order."""
        return tuple(
            i for i in self.detector_ids if self.policy.detectors.get(i).enabled
        )

    def process(self, record: CloudTrailRecord) -> list[Finding]:
        """The findings for `record`, and for the held records its arrival releases.

        A duplicate gives none; a call held for its AssumeRole gives its findings
        when that arrives (or none, if the watermark passes it first).
        """
        record_id = record_id_of(record)
        if record_id is not None and (
            record_id in self._seen_ids or record_id in self._held_ids
        ):
            self.counters.duplicate += 1
            return []

        findings: list[Finding] = []
        time = record.event_time
        clock = self.watermark
        if time is not None:
            if clock.current is not None and time < clock.current:
                self.counters.late += 1
            else:
                if clock.latest is None or time > clock.latest:
                    watermark = clock.advance(time)
                    held, sessions, seen = self._heaps
                    if (
                        (held and held[0][0] < watermark)
                        or (sessions and sessions[0][0] < watermark)
                        or (seen and seen[0][0] < watermark)
                    ):
                        findings = self._expire(watermark)
                if (
                    record_id is not None
                    and record.identity.type == "AssumedRole"
                    and self._hold(record_id, record, time)
                ):
                    return findings

        findings.extend(self._check(record, record_id))
        return findings

    def drain(self) -> list[Finding]:
        """Check every held record as if its AssumeRole never came (input's end)."""
        findings: list[Finding] = []
        for held in self._pending.expire(None):
            findings.extend(self._check(held.record, held.id))
        return findings

    def take_changes(self) -> StateDelta:
        """The entries written and dropped since the last call (O(changes))."""
        delta = StateDelta()
        clock = self.watermark.take_change()
        if clock is not None:
            delta.upserts.append(clock)
        self.attributor.sessions.take_changes(delta)
        self._seen.take_changes(delta)
        self._pending.take_changes(delta)
        return delta

    def restore(self, entries: Iterable[StateEntry]) -> None:
        """Load the entries of all `take_changes` so far into a fresh engine.

        Entries of unknown kinds are skipped, as are sessions of third parties no
        longer in the policy (their calls are then attributed without them).
        """
        if self.watermark.latest is not None or any(self.state_sizes().values()):
            raise RuntimeError("restore needs a fresh engine")
        sessions = self.attributor.sessions
        for entry in entries:
            if entry.kind == "session":
                sessions.restore(entry, self.attributor.session_attribution)
            elif entry.kind == "seen":
                self._seen.restore(entry)
            elif entry.kind == "pending":
                self._pending.restore(entry)
            elif entry.kind == "clock":
                self.watermark.restore(entry)
        sessions.restored()
        self._seen.restored()
        self._pending.restored()

    def state_sizes(self) -> dict[str, int]:
        """Live entries per kind."""
        return {
            "clock": int(self.watermark.latest is not None),
            "session": len(self.attributor.sessions),
            "seen": len(self._seen),
            "pending": len(self._pending),
        }

    def _hold(
        self, record_id: str, record: CloudTrailRecord, event_time: datetime
    ) -> bool:
        key = self.attributor.waiting_key(record)
        return key is not None and self._pending.hold(
            record_id, record, key, event_time
        )

    def _check(self, record: CloudTrailRecord, record_id: str | None) -> list[Finding]:
        """Attribute and detect one record, then any held record it releases."""
        attribution = self.attributor.attribute(record)
        if attribution.kind in self._by_kind:
            findings = self._detect(record, record_id, attribution)
        else:
            findings = []
        if not self._held_ids or record.event_source != "sts.amazonaws.com":
            return findings

        released = deque(self._release(record))
        while released:
            held = released.popleft()
            attribution = self.attributor.attribute(held.record)
            findings.extend(self._detect(held.record, held.id, attribution))
            released.extend(self._release(held.record))
        return findings

    def _release(self, record: CloudTrailRecord) -> list[HeldRecord]:
        """The held calls made with the credentials an STS record returned."""
        key = returned_key(record)
        return self._pending.release(key) if key is not None else []

    def _detect(
        self,
        record: CloudTrailRecord,
        record_id: str | None,
        attribution: Attribution,
    ) -> list[Finding]:
        detectors = self._by_kind.get(attribution.kind)
        if not detectors:
            return []

        time = record.event_time or self.watermark.latest
        if record_id is not None and time is not None:
            self._seen.add(record_id, time, self.watermark.current)
        findings: list[Finding] = []
        for detector in detectors:
            findings.extend(detector.check(record, attribution))
        return findings

    def _expire(self, watermark: datetime) -> list[Finding]:
        """Release held records and drop the entries the watermark has passed."""
        findings: list[Finding] = []
        for held in self._pending.expire(watermark):
            findings.extend(self._check(held.record, held.id))
        self.attributor.sessions.expire(watermark)
        self._seen.expire(watermark)
        return findings
