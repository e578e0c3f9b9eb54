"""Session calls that arrived before the AssumeRole that opened their session.

Such a call is held until the AssumeRole for its access key arrives (then it is
attributed to whoever opened the session) or until the watermark passes its
eventTime (then it is attributed as if no session were known, as it always was).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import orjson

from detectors.state import ExpiryQueue, StateDelta, StateEntry
from service.records import CloudTrailRecord, RecordError, record_from_dict


@dataclass(frozen=True, slots=True)
class HeldRecord:
    """A record waiting for the session of `access_key`; `raw` is its JSON."""

    id: str
    record: CloudTrailRecord
    access_key: str
    time: datetime
    raw: bytes


class PendingRecords:
    """The held records of one partition, by record id and by access key."""

    def __init__(self) -> None:
        # Read-only outside this class: the engine tests membership on the hot path.
        self.held: dict[str, HeldRecord] = {}
        self._waiting: dict[str, dict[str, None]] = {}
        self.expiries = ExpiryQueue()
        self._dirty: dict[str, None] = {}

    def __len__(self) -> int:
        return len(self.held)

    def hold(
        self,
        record_id: str,
        record: CloudTrailRecord,
        access_key: str,
        event_time: datetime,
    ) -> bool:
        """Hold a record until its session is known; False if it cannot be stored."""
        try:
            raw = orjson.dumps(record.raw, default=dict)
        except orjson.JSONEncodeError:
            return False
        self._add(HeldRecord(record_id, record, access_key, event_time, raw))
        self._dirty[record_id] = None
        return True

    def release(self, access_key: str) -> list[HeldRecord]:
        """Take the records waiting for `access_key`, oldest first (ties: by id)."""
        ids = self._waiting.pop(access_key, None)
        if ids is None:
            return []
        held = [self.held.pop(record_id) for record_id in ids]
        self._dirty.update(ids)
        held.sort(key=lambda h: (h.time, h.id))
        return held

    def expire(self, watermark: datetime | None) -> Iterator[HeldRecord]:
        """Take the records the watermark has passed (all for None), oldest first.

        Lazy: a record released while the caller handles an earlier one is skipped.
        """
        for _, record_id in self.expiries.pop_due(watermark):
            held = self.held.get(record_id)
            if held is None:
                continue
            del self.held[record_id]
            waiting = self._waiting[held.access_key]
            del waiting[record_id]
            if not waiting:
                del self._waiting[held.access_key]
            self._dirty[record_id] = None
            yield held

    def take_changes(self, delta: StateDelta) -> None:
        for record_id in self._dirty:
            held = self.held.get(record_id)
            if held is None:
                delta.deletes.append(("pending", record_id))
            else:
                delta.upserts.append(
                    StateEntry("pending", record_id, held.raw, held.time)
                )
        self._dirty.clear()

    def restore(self, entry: StateEntry) -> None:
        try:
            record = record_from_dict(orjson.loads(entry.value))
        except (orjson.JSONDecodeError, RecordError, AttributeError):
            return
        key = record.identity.access_key_id
        if key is None or record.event_time is None:
            return
        self._add(HeldRecord(entry.key, record, key, record.event_time, entry.value))

    def restored(self) -> None:
        """Rebuild the expiry order once every entry is loaded."""
        self.expiries.reset([(h.time, i) for i, h in self.held.items()])

    def _add(self, held: HeldRecord) -> None:
        self.held[held.id] = held
        self._waiting.setdefault(held.access_key, {})[held.id] = None
        self.expiries.push(held.time, held.id)
