"""The webhook protocol: header names, HMAC signatures and Retry-After parsing.

Bodies are signed with HMAC-SHA256 over `f"{timestamp}.{body}"`; receivers check
them with `verify_signature`. `webhook_sender` sends the deliveries.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    pass

_log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Trailwarden-Signature"
TIMESTAMP_HEADER = "X-Trailwarden-Timestamp"
DELIVERY_HEADER = "X-Trailwarden-Delivery"
# 408 and 425 are "try again" by definition; 429 and 5xx are the receiver's load.
_RETRIABLE_STATUSES = frozenset({408, 425, 429})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp`."""
    message = timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """True when `signature` is the one `sign` makes; compared in constant time."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())
