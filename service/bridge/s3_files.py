"""CloudTrail log files in S3: the key layout, and fetching one file's records.

Keys follow `[prefix/]AWSLogs/[o-org/]account/CloudTrail/region/yyyy/mm/dd/file`;
digests live under `CloudTrail-Digest/`, Insights under `CloudTrail-Insight/`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from service.bridge.notifications import LogObject
from service.envelopes import MAX_FILE_BYTES, Unwrapped, unwrap
from service.errors import ServiceError

__all__ = [
    "KeyKind",
    "KeyLayout",
    "ObjectUnreadable",
    "S3Unavailable",
    "account_from_key",
    "fetch_log_file",
    "key_kind",
    "parse_key",
]

KeyKind = Literal["log", "digest", "insight"]

_LAYOUT = re.compile(
    r"(?:^|/)AWSLogs/(?:(?P<org>o-[a-z0-9]{10,32})/)?(?P<account>\d{12})/"
    r"(?P<folder>CloudTrail|CloudTrail-Digest|CloudTrail-Insight)/"
    r"(?P<region>[a-z0-9-]+)/(?P<year>\d{4})/(?P<month>\d\d)/(?P<day>\d\d)/"
)
_DIGEST_NAME = re.compile(r"_CloudTrail-Digest_[^/]*\.json\.gz$")
# Errors that another attempt will not fix: the file goes to the dead letters.
_PERMANENT = {
    "NoSuchKey": "no_such_key",
    "404": "no_such_key",
    "NotFound": "no_such_key",
    "NoSuchBucket": "no_such_bucket",
    "AccessDenied": "access_denied",
    "403": "access_denied",
    "InvalidObjectState": "archived",
}


class ObjectUnreadable(Exception):
    """A file that cannot be read or decoded; `reason` is a bounded label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class S3Unavailable(ServiceError):
    """S3 failed in a way another attempt may not (throttling, 5xx, network)."""


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Where a key sits in the CloudTrail layout."""

    org: str | None
    account: str
    region: str
    day: date
    kind: KeyKind


def key_kind(key: str) -> KeyKind:
    """Whether a key is a log file, a digest or an Insights file."""
    if "/CloudTrail-Digest/" in key or _DIGEST_NAME.search(key):
        return "digest"
    if "/CloudTrail-Insight/" in key:
        return "insight"
    return "log"


def parse_key(key: str) -> KeyLayout | None:
    """The layout parts of a CloudTrail key, or None for a key outside the layout."""
    match = _LAYOUT.search(key)
    if match is None:
        return None
    try:
        day = date(int(match["year"]), int(match["month"]), int(match["day"]))
    except ValueError:
        return None
    return KeyLayout(
        match["org"], match["account"], match["region"], day, key_kind(key)
    )


def account_from_key(key: str) -> str | None:
    """The account in `AWSLogs/[o-org/]account/...`, for records without one."""
    layout = parse_key(key)
    return None if layout is None else layout.account


async def fetch_log_file(s3: Any, obj: LogObject) -> Unwrapped:
    """Fetch one log file and decode it with the service's own decoder.

    Raises ObjectUnreadable for a missing, forbidden or undecodable file, and
    S3Unavailable when S3 fails in a way that may pass.
    """
    data = await asyncio.to_thread(_get_object, s3, obj)
    unwrapped = unwrap(data, max_bytes=MAX_FILE_BYTES)
    if not unwrapped.records and unwrapped.failures:
        failure = unwrapped.failures[0]
        raise ObjectUnreadable(failure.reason, failure.detail)
    return unwrapped


def _get_object(s3: Any, obj: LogObject) -> bytes:
    try:
        return _read(s3, obj, obj.key)
    except ObjectUnreadable as exc:
        if exc.reason != "no_such_key" or obj.alternate_key is None:
            raise
    return _read(s3, obj, obj.alternate_key)


def _read(s3: Any, obj: LogObject, key: str) -> bytes:
    try:
        response = s3.get_object(Bucket=obj.bucket, Key=key)
        with response["Body"] as body:
            # One byte past the limit is enough for unwrap to say "too large".
            data: bytes = body.read(MAX_FILE_BYTES + 1)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        reason = _PERMANENT.get(code)
        if reason is not None:
            raise ObjectUnreadable(reason, f"{obj}: {code}") from exc
        raise S3Unavailable(f"S3 GetObject {obj} failed: {code}") from exc
    except BotoCoreError as exc:
        raise S3Unavailable(f"S3 GetObject {obj} failed: {exc}") from exc

    return data
