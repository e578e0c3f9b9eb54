"""Records already checked, by eventID and recipientAccountId, for a horizon.

The same CloudTrail record can arrive twice (two trails, or EventBridge plus S3).
Only records that reached a detector are remembered: a repeat of any other record
changes nothing. An id is kept until the watermark passes eventTime + horizon.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from detectors.state import ExpiryQueue, StateDelta, StateEntry
from service.records import CloudTrailRecord

DEFAULT_HORIZON = timedelta(hours=24)
_NO_VALUE = b"null"


def record_id_of(record: CloudTrailRecord) -> str | None:
    """What makes a record unique: its recipient account and eventID (None: no id)."""
    event_id = record.event_id
    if event_id is None:
        return None
    return f"{record.recipient_account_id or '-'}/{event_id}"


class SeenRecords:
    """The ids of the records the detectors have seen, each until its horizon."""

    def __init__(self, horizon: timedelta = DEFAULT_HORIZON) -> None:
        self.horizon = horizon
        # Read-only outside this class: the engine tests membership on the hot path.
        self.expiry: dict[str, datetime] = {}
        self.expiries = ExpiryQueue()
        self._dirty: dict[str, None] = {}

    def __len__(self) -> int:
        return len(self.expiry)

    def add(
        self, record_id: str, event_time: datetime, watermark: datetime | None
    ) -> None:
        """Remember an id unless its horizon is already behind the watermark."""
        expires = event_time + self.horizon
        if record_id in self.expiry or (watermark is not None and expires < watermark):
            return
        self.expiry[record_id] = expires
        self.expiries.push(expires, record_id)
        self._dirty[record_id] = None

    def expire(self, watermark: datetime) -> None:
        """Forget every id whose horizon the watermark has passed."""
        # Ids are never replaced or dropped early, so every popped pair is live.
        for _, key in self.expiries.pop_due(watermark):
            del self.expiry[key]
            self._dirty[key] = None

    def take_changes(self, delta: StateDelta) -> None:
        for key in self._dirty:
            expires = self.expiry.get(key)
            if expires is None:
                delta.deletes.append(("seen", key))
            else:
                delta.upserts.append(StateEntry("seen", key, _NO_VALUE, expires))
        self._dirty.clear()

    def restore(self, entry: StateEntry) -> None:
        if entry.expires_at is not None:
            self.expiry[entry.key] = entry.expires_at

    def restored(self) -> None:
        """Rebuild the expiry order once every entry is loaded."""
        self.expiries.reset([(e, k) for k, e in self.expiry.items()])
