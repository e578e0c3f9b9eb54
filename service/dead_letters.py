"""DeadLetter: input that could not be decoded, kept for an operator to inspect."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

MAX_STORED_PAYLOAD_BYTES = 1024 * 1024
"""The store keeps at most this much of each payload; `payload_size` keeps the rest."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One undecodable message or file, with where it came from and why it failed.

    `source` is the topic or the file path; `partition`/`offset` are None for
    files. `payload_size` is the original size in bytes when the store cut
    `payload` to MAX_STORED_PAYLOAD_BYTES, and None when `payload` is whole.
    """

    source: str
    partition: int | None
    offset: int | None
    reason: str
    detail: str
    payload: bytes
    received_at: datetime
    payload_size: int | None = None

    @property
    def size(self) -> int:
        """The size of the original payload in bytes."""
        return len(self.payload) if self.payload_size is None else self.payload_size
