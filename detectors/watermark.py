"""The event-time clock of one partition: the latest eventTime seen, less a grace.

CloudTrail delivers records 15-20 minutes late and out of order, so expiry and
"late" are judged against the watermark (latest eventTime - grace), never against
the latest time itself and never against the wall clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson

from detectors.state import StateEntry, decode_time, encode_time, loads

DEFAULT_GRACE = timedelta(minutes=30)
_KEY = "latest_event_time"


class Watermark:
    """The latest eventTime seen, and the watermark `grace` behind it."""

    __slots__ = ("_changed", "current", "grace", "latest")

    def __init__(self, grace: timedelta = DEFAULT_GRACE) -> None:
        if grace < timedelta(0):
            raise ValueError(f"grace must not be negative, got {grace}")
        self.grace = grace
        self.latest: datetime | None = None
        self.current: datetime | None = None
        self._changed = False

    def advance(self, event_time: datetime) -> datetime:
        """Move the clock to `event_time`, the latest time seen: the new watermark."""
        self.latest = event_time
        self.current = watermark = event_time - self.grace
        self._changed = True
        return watermark

    def take_change(self) -> StateEntry | None:
        """The clock entry if the clock moved since the last take."""
        if not self._changed or self.latest is None:
            return None
        self._changed = False
        value = orjson.dumps(encode_time(self.latest))
        return StateEntry("clock", _KEY, value, None)

    def restore(self, entry: StateEntry) -> None:
        latest = decode_time(loads(entry.value))
        if entry.key == _KEY and latest is not None:
            self.advance(latest)
            self._changed = False
