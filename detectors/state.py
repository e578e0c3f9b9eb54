"""Engine state as entries: what a checkpoint writes, and what a restore reads back.

Every piece of state the engine keeps is one StateEntry of a bounded set of kinds.
Entries carry their event-time expiry, so the state of an endless stream stays
bounded; `StateDelta` holds only what changed since the last checkpoint.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import orjson

StateKind = Literal["clock", "session", "seen", "pending"]
STATE_KINDS: tuple[StateKind, ...] = ("clock", "session", "seen", "pending")


@dataclass(frozen=True, slots=True)
class StateEntry:
    """One piece of engine state, keyed by (kind, key).

    `value` is orjson-encoded; `expires_at` is the event time after which the
    watermark drops the entry (None: it never expires).
    """

    kind: str
    key: str
    value: bytes
    expires_at: datetime | None


@dataclass(slots=True)
class StateDelta:
    """The entries written and the (kind, key) pairs dropped since the last take."""

    upserts: list[StateEntry] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        """True when there is anything to write."""
        return bool(self.upserts or self.deletes)


@dataclass(slots=True)
class EngineCounters:
    """Records the engine treated specially, counted since it was built."""

    late: int = 0
    duplicate: int = 0
    session_elsewhere: int = 0


class ExpiryQueue:
    """(expiry, key) pairs, earliest expiry first and then the smallest key.

    Stores push a pair whenever they write an entry and check each popped pair
    against their live entry, so stale pairs cost nothing but a skipped pop.
    """

    __slots__ = ("heap",)

    def __init__(self) -> None:
        # The engine peeks at heap[0] to skip sweeps with nothing due.
        self.heap: list[tuple[datetime, str]] = []

    def push(self, expires: datetime, key: str) -> None:
        heapq.heappush(self.heap, (expires, key))

    def reset(self, pairs: list[tuple[datetime, str]]) -> None:
        """Replace every pair, as after a restore or a compaction."""
        self.heap[:] = pairs
        heapq.heapify(self.heap)

    def pop_due(self, watermark: datetime | None) -> Iterator[tuple[datetime, str]]:
        """Pop the pairs the watermark has passed, in order (all of them for None).

        The heap is read again after each pop, so callers may push while iterating.
        """
        heap = self.heap
        while heap and (watermark is None or heap[0][0] < watermark):
            yield heapq.heappop(heap)


def encode_time(moment: datetime) -> str:
    """An aware datetime as ISO 8601, the way entries store times."""
    return moment.isoformat()


def decode_time(text: object) -> datetime | None:
    """The datetime `encode_time` wrote, or None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def loads(value: bytes) -> object:
    """An entry's value, or None when it is not valid JSON."""
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
