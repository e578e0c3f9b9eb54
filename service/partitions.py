"""The partitions this replica owns, each with its own DetectionEngine.

A partition is assigned, then restored from its checkpoint (a fresh engine, the
stored state, the stored next offset) before any of its records are processed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiokafka import TopicPartition

from detectors.engine import DetectionEngine
from detectors.state import StateDelta
from detectors.third_parties import Policy
from service import metrics
from service.store import AlertStore


@dataclass(slots=True)
class OwnedPartition:
    """One restored partition: its engine, and the offset its checkpoint is at.

    `position` is None while the partition has no checkpoint yet (it then starts
    from the group's committed offset, or the earliest).
    """

    tp: TopicPartition
    engine: DetectionEngine
    position: int | None
    # Set when the log restarted below the checkpoint (the topic was recreated,
    # or the broker lost its data): every message is new, and the next save
    # moves the checkpoint down from where it stood.
    log_restarted: bool = False
    _counted: tuple[int, int, int] = (0, 0, 0)

    def fresh(self, messages: Sequence[Any]) -> list[Any]:
        """`messages` at or after the checkpoint; earlier ones are already stored."""
        if self.position is None or self.log_restarted:
            return list(messages)
        position = self.position
        return [message for message in messages if message.offset >= position]

    def take_changes(self) -> StateDelta:
        """The engine's state changes since the last call; counts its counters."""
        counters = self.engine.counters
        now = (counters.late, counters.duplicate, counters.session_elsewhere)
        before = self._counted
        late, duplicate, elsewhere = (a - b for a, b in zip(now, before, strict=True))
        metrics.LATE_RECORDS.inc(max(late, 0))
        metrics.DUPLICATE_RECORDS.inc(max(duplicate, 0))
        metrics.SESSION_ELSEWHERE.inc(max(elsewhere, 0))
        self._counted = now
        return self.engine.take_changes()


@dataclass(slots=True)
class Partitions:
    """Assigned partitions waiting for their restore, and the restored ones."""

    policy: Policy
    grace: timedelta
    pending: set[TopicPartition] = field(default_factory=set)
    owned: dict[TopicPartition, OwnedPartition] = field(default_factory=dict)
    _kinds: set[str] = field(default_factory=set)

    def assign(self, tps: set[TopicPartition]) -> None:
        self.pending |= tps - set(self.owned)

    def revoke(self, tps: set[TopicPartition]) -> None:
        self.pending -= tps
        for tp in tps:
            self.owned.pop(tp, None)
        self.export_state_sizes()

    def owns(self, tp: TopicPartition) -> bool:
        return tp in self.owned or tp in self.pending

    def reset(self, tp: TopicPartition) -> None:
        """Forget the partition's engine: it is restored again before going on."""
        if self.owned.pop(tp, None) is not None:
            self.pending.add(tp)

    async def restore(self, store: AlertStore, tp: TopicPartition) -> OwnedPartition:
        """Load the checkpoint into a fresh engine; raises StoreUnavailable."""
        started = time.perf_counter()
        checkpoint = await store.load_checkpoint(tp.topic, tp.partition)
        engine = DetectionEngine(self.policy, grace=self.grace)
        position = None
        if checkpoint is not None:
            engine.restore(checkpoint.entries)
            position = checkpoint.next_offset
        counters = engine.counters
        owned = OwnedPartition(
            tp,
            engine,
            position,
            _counted=(counters.late, counters.duplicate, counters.session_elsewhere),
        )

        self.pending.discard(tp)
        self.owned[tp] = owned
        metrics.RESTORE_SECONDS.observe(time.perf_counter() - started)
        return owned

    def export_state_sizes(self) -> None:
        """Set the state-entries gauge, per kind, over every owned partition."""
        totals: dict[str, int] = dict.fromkeys(self._kinds, 0)
        for owned in self.owned.values():
            for kind, size in owned.engine.state_sizes().items():
                totals[kind] = totals.get(kind, 0) + size
        for kind, size in totals.items():
            metrics.STATE_ENTRIES.labels(kind).set(size)
        self._kinds |= set(totals)
