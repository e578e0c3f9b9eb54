"""Sessions that STS opened: access key id -> whose session it is, until it expires.

A third party's session attributes the calls made with it. Other sessions (ours,
AWS services') are kept too, so that their calls are known and never wait for an
AssumeRole. Sessions leave when the watermark passes their expiry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import orjson

from detectors.state import (
    ExpiryQueue,
    StateDelta,
    StateEntry,
    decode_time,
    encode_time,
    loads,
)
from service.records import CloudTrailRecord, parse_event_time

if TYPE_CHECKING:
    from detectors.attribution import Attribution

# AssumeRole accepts at most 12 hours (DurationSeconds 43200).
MAX_SESSION = timedelta(hours=12)
DEFAULT_MAX_SESSIONS = 100_000

MakeAttribution = Callable[[object, object], "Attribution | None"]


@dataclass(frozen=True, slots=True)
class Session:
    """Who holds an access key (None: not a third party), from `start` to `expires`."""

    attribution: Attribution | None
    start: datetime
    expires: datetime

    def covers(self, moment: datetime | None) -> bool:
        """Whether a call at `moment` (None: unknown time) falls inside the session."""
        return moment is None or self.start <= moment < self.expires


class SessionBook:
    """The live sessions of one partition, by access key id.

    At most `max_sessions` are kept: past that, the one expiring first goes (ties:
    the smallest key), so the outcome does not depend on arrival order.
    """

    def __init__(self, max_sessions: int = DEFAULT_MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions
        # Read-only outside this class: attribution looks keys up on the hot path.
        self.by_key: dict[str, Session] = {}
        self.expiries = ExpiryQueue()
        self._dirty: dict[str, None] = {}

    def __len__(self) -> int:
        return len(self.by_key)

    def open(self, key: str, session: Session) -> None:
        """Remember a session, replacing any earlier one under the same key."""
        if self.by_key.get(key) == session:
            return
        self.by_key[key] = session
        self.expiries.push(session.expires, key)
        self._dirty[key] = None
        while len(self.by_key) > self.max_sessions:
            self._evict_first()

    def expire(self, watermark: datetime) -> None:
        """Drop every session the watermark has passed."""
        for expires, key in self.expiries.pop_due(watermark):
            self._drop(expires, key)

    def take_changes(self, delta: StateDelta) -> None:
        for key in self._dirty:
            session = self.by_key.get(key)
            if session is None:
                delta.deletes.append(("session", key))
                continue
            attribution = session.attribution
            party = attribution.third_party if attribution is not None else None
            value = {
                "party": party.id if party is not None else None,
                "account": attribution.external_account if attribution else None,
                "start": encode_time(session.start),
            }
            delta.upserts.append(
                StateEntry("session", key, orjson.dumps(value), session.expires)
            )
        self._dirty.clear()

    def restore(self, entry: StateEntry, attribution_for: MakeAttribution) -> None:
        """Load one "session" entry; `attribution_for(party, account)` rebuilds who."""
        value = loads(entry.value)
        if not isinstance(value, dict) or entry.expires_at is None:
            return
        start = decode_time(value.get("start"))
        if start is None:
            return
        attribution = attribution_for(value.get("party"), value.get("account"))
        self.by_key[entry.key] = Session(attribution, start, entry.expires_at)

    def restored(self) -> None:
        """Rebuild the expiry order once every entry is loaded."""
        self.expiries.reset([(s.expires, k) for k, s in self.by_key.items()])

    def _evict_first(self) -> None:
        # Over the cap, so a live pair is in the queue; stale ones are skipped.
        pairs = self.expiries.pop_due(None)
        while not self._drop(*next(pairs)):
            pass

    def _drop(self, expires: datetime, key: str) -> bool:
        session = self.by_key.get(key)
        if session is None or session.expires != expires:
            return False
        del self.by_key[key]
        self._dirty[key] = None
        return True


def opened_session(
    record: CloudTrailRecord, attribution: Attribution | None
) -> tuple[str, Session] | None:
    """The access key an STS record returned and the session it opened, if any."""
    credentials = _credentials(record)
    started = record.event_time
    if credentials is None or started is None:
        return None
    key, expiration = credentials
    return key, Session(attribution, started, _expiry(record, expiration, started))


def returned_key(record: CloudTrailRecord) -> str | None:
    """The access key id an STS record returned, if any."""
    credentials = _credentials(record)
    return credentials[0] if credentials is not None else None


def _credentials(record: CloudTrailRecord) -> tuple[str, object] | None:
    """The access key id an STS call returned, and its `expiration` value."""
    credentials = record.response_elements.get("credentials")
    if not isinstance(credentials, dict):
        return None
    key = credentials.get("accessKeyId")
    if not isinstance(key, str) or not key:
        return None
    return key, credentials.get("expiration")


def _expiry(
    record: CloudTrailRecord, expiration: object, started: datetime
) -> datetime:
    """When the returned credentials expire, at most 12 hours after `started`."""
    latest = started + MAX_SESSION
    expires = _parse_expiration(expiration)
    if expires is not None and started < expires <= latest:
        return expires
    duration = record.request_parameters.get("durationSeconds")
    if isinstance(duration, int | str) and not isinstance(duration, bool):
        try:
            seconds = int(duration)
        except ValueError:
            seconds = 0
        if seconds > 0:
            return min(started + timedelta(seconds=seconds), latest)
    return latest


def _parse_expiration(value: object) -> datetime | None:
    # CloudTrail writes "Jul 30, 2024, 9:46:15 PM" (UTC); some tools write ISO.
    if not isinstance(value, str):
        return parse_event_time(value)
    try:
        return datetime.strptime(value, "%b %d, %Y, %I:%M:%S %p").replace(tzinfo=UTC)
    except ValueError:
        return parse_event_time(value)
