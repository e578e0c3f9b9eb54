"""Unwrap one Kafka message or file into CloudTrail records.

Recognises, without being told, every envelope CloudTrail arrives in (S3 log files,
JSON arrays and lines, EventBridge, CloudWatch Logs, LookupEvents); never raises.
"""

from __future__ import annotations

import binascii
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from service.records import CloudTrailRecord, RecordError, record_from_dict

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_LISTED_FAILURES",
    "MAX_PAYLOAD_BYTES",
    "DecodeFailure",
    "DecodeReason",
    "Unwrapped",
    "unwrap",
]

DecodeReason = Literal[
    "not_json",
    "bad_gzip",
    "bad_base64",
    "wrong_shape",
    "not_cloudtrail",
    "too_large",
    "empty",
]

MAX_PAYLOAD_BYTES: int = 16 * 1024 * 1024
# Files (replay, the S3 bridge) may be larger than a Kafka message: a busy
# account's five-minute CloudTrail log file can inflate past 16 MiB.
MAX_FILE_BYTES: int = 256 * 1024 * 1024
# A junk payload of many lines would otherwise list one failure per line.
MAX_LISTED_FAILURES = 100

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_BASE64 = re.compile(rb"[A-Za-z0-9+/=\r\n]+")
# Envelopes nest at most a few levels deep (a test-fixture wrapper around an
# EventBridge event, CloudWatch Logs inside a Lambda event); deeper is hostile.
_MAX_DEPTH = 6
_DIGEST_KEYS = frozenset(
    ("digestStartTime", "digestEndTime", "previousDigestSignature", "digestS3Object")
)
_RECORD_KEYS = frozenset(
    ("eventSource", "eventName", "eventVersion", "eventID", "insightDetails")
)
_CLOUDTRAIL_DETAIL_KEYS = frozenset(("eventVersion", "eventSource", "eventName"))
# Other tools wrap records in one of these keys (Panther tests, StreamAlert tests,
# Cribl samples, Splunk HEC); see _unwrap_wrapper.
_WRAPPER_KEYS = ("event", "data", "_raw", "message")
_NOT_JSON = object()


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """One thing that could not be decoded, and why (never a dump of the payload)."""

    reason: DecodeReason
    detail: str


@dataclass(slots=True)
class Unwrapped:
    """What one payload held: records, skipped items by reason, and failures."""

    records: list[CloudTrailRecord] = field(default_factory=list)
    failures: list[DecodeFailure] = field(default_factory=list)
    unlisted_failures: int = 0  # failures past MAX_LISTED_FAILURES, counted only
    skipped: dict[str, int] = field(default_factory=dict)
    envelope: str = "unknown"


def unwrap(payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Unwrapped:
    """Decode one payload, whatever envelope it is in. Never raises on bad input.

    `envelope` names the outermost envelope recognised: "record", "records_file",
    "json_array", "json_lines", "eventbridge", "cloudwatch_logs", "lookup_events",
    "digest", "wrapper" or "unknown".
    """
    unwrapped = Unwrapped()
    if len(payload) > max_bytes:
        _fail(unwrapped, "too_large", f"payload of {len(payload)} bytes", "")
        return unwrapped
    if not payload or payload.isspace():
        _fail(unwrapped, "empty", "payload is empty", "")
        return unwrapped

    _Decoder(unwrapped, max_bytes).blob(payload, "", 0, lines=True)
    return unwrapped


class _Decoder:
    """Walks one payload, appending to the Unwrapped it was given."""

    __slots__ = ("budget", "out")

    def __init__(self, out: Unwrapped, max_bytes: int) -> None:
        self.out = out
        # Bytes inflated so far count against one budget for the whole payload,
        # so many small gzip members cannot add up to a bomb.
        self.budget = max_bytes

    # Bytes: gzip, JSON, base64, JSON Lines.

    def blob(self, data: bytes, where: str, depth: int, *, lines: bool) -> None:
        if depth > _MAX_DEPTH:
            _fail(self.out, "wrong_shape", "envelopes nested too deeply", where)
            return
        if data.startswith(_GZIP_MAGIC):
            inflated = _gunzip(data, self.budget)
            if isinstance(inflated, DecodeFailure):
                _fail(self.out, inflated.reason, inflated.detail, where)
                return
            self.budget -= len(inflated)
            self.blob(inflated, where, depth + 1, lines=lines)
            return

        if data.startswith(_BOM):
            data = data[len(_BOM) :]
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            repaired = _repair_utf8(data)
            if repaired is None:
                self.not_json(data, where, depth, lines=lines)
            else:
                self.blob(repaired, where, depth + 1, lines=lines)
            return
        self.value(value, where, depth)

    def not_json(self, data: bytes, where: str, depth: int, *, lines: bool) -> None:
        stripped = data.strip()
        if _BASE64.fullmatch(stripped) and len(stripped) >= 8:
            if lines and b"\n" in stripped and self.base64_lines(stripped):
                self.json_lines(stripped, where, depth, base64=True)
                return
            decoded = _b64decode(stripped)
            if decoded is not None and decoded.lstrip()[:1] in (b"{", b"[", b"\x1f"):
                self.blob(decoded, where, depth + 1, lines=lines)
                return
            if stripped.startswith(b"H4sI"):
                detail = "base64 text that is not valid gzip"
                _fail(self.out, "bad_base64", detail, where)
                return
        if lines and b"\n" in stripped:
            self.json_lines(stripped, where, depth)
            return

        _fail(self.out, "not_json", _json_detail(data), where)

    def base64_lines(self, data: bytes) -> bool:
        """Whether multi-line base64 is one encoded item per line, not one wrapped.

        Wrapped base64 breaks lines mid-item, so its first line alone never decodes
        to a whole gzip stream or JSON document.
        """
        first = _b64decode(data.split(b"\n", 1)[0].strip(), strict=True)
        if first is None:
            return False
        if first.startswith(_GZIP_MAGIC):
            return not isinstance(_gunzip(first, self.budget), DecodeFailure)
        try:
            orjson.loads(first)
        except orjson.JSONDecodeError:
            return False
        return True

    def json_lines(
        self, data: bytes, where: str, depth: int, *, base64: bool = False
    ) -> None:
        lines: list[tuple[int, bytes, object]] = []
        for number, line in enumerate(data.split(b"\n"), start=1):
            line = line.strip()
            if not line:
                continue
            try:
                lines.append((number, line, orjson.loads(line)))
            except orjson.JSONDecodeError:
                lines.append((number, line, _NOT_JSON))
        # Random bytes or a truncated pretty-printed document: one failure, not
        # one per line.
        if not base64 and all(value is _NOT_JSON for _, _, value in lines):
            _fail(self.out, "not_json", "no line is a JSON document", where)
            return

        self.mark("json_lines")
        for number, line, value in lines:
            line_where = f"{where}line {number}: "
            if value is _NOT_JSON:
                self.not_json(line, line_where, depth + 1, lines=False)
            else:
                self.value(value, line_where, depth + 1)

    # Decoded JSON: which envelope is it?

    def value(self, value: object, where: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            _fail(self.out, "wrong_shape", "envelopes nested too deeply", where)
        elif isinstance(value, dict):
            self.mapping(value, where, depth)
        elif isinstance(value, list):
            self.array(value, where, depth)
        elif isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
            # JSON that was encoded a second time, as some producers do.
            self.blob(value.encode(), where, depth + 1, lines=False)
        else:
            detail = f"JSON {type(value).__name__}, not an object or array"
            _fail(self.out, "wrong_shape", detail, where)

    def array(self, items: list[Any], where: str, depth: int) -> None:
        if not items:
            _fail(self.out, "empty", "JSON array has no items", where)
            return
        if not any(isinstance(item, dict | list | str) for item in items):
            detail = "JSON array holds no objects"
            _fail(self.out, "wrong_shape", detail, where)
            return

        self.mark("json_array")
        for index, item in enumerate(items):
            self.value(item, f"{where}item {index}: ", depth + 1)

    def mapping(self, obj: dict[str, Any], where: str, depth: int) -> None:
        kind = _kind(obj)
        if kind is None:
            self.wrapper(obj, where, depth)
            return

        self.mark(kind)
        if kind == "records_file":
            self.records_file(obj, where)
        elif kind == "digest":
            self.skip("digest")
        elif kind == "cloudwatch_logs":
            self.cloudwatch_logs(obj, where, depth)
        elif kind == "eventbridge":
            self.eventbridge(obj, where)
        elif kind == "lookup_events":
            self.lookup_events(obj, where)
        else:
            self.record(obj, where)

    # Envelopes.

    def records_file(self, obj: dict[str, Any], where: str) -> None:
        records = obj["Records"]
        if not isinstance(records, list):
            _fail(self.out, "wrong_shape", "Records is not a list", where)
            return
        for index, item in enumerate(records):
            self.record(item, f"{where}record {index}: ")

    def eventbridge(self, obj: dict[str, Any], where: str) -> None:
        detail_type = obj.get("detail-type")
        detail = obj.get("detail")
        via_cloudtrail = isinstance(detail_type, str) and detail_type.endswith(
            "via CloudTrail"
        )
        # Redacted fixtures blank the detail-type; a detail carrying CloudTrail's
        # own version, source and name is still a CloudTrail record.
        if not via_cloudtrail and not (
            isinstance(detail, dict) and _CLOUDTRAIL_DETAIL_KEYS.issubset(detail)
        ):
            text = f"EventBridge event of detail-type {_short(detail_type)}"
            _fail(self.out, "not_cloudtrail", text, where)
            return

        self.record(detail, where)

    def cloudwatch_logs(self, obj: dict[str, Any], where: str, depth: int) -> None:
        awslogs = obj.get("awslogs")
        if isinstance(awslogs, dict):
            self.lambda_awslogs(awslogs, where, depth)
            return
        if obj.get("messageType") == "CONTROL_MESSAGE":
            self.skip("control_message")
            return
        events = obj.get("logEvents")
        if not isinstance(events, list):
            _fail(self.out, "wrong_shape", "logEvents is not a list", where)
            return

        for index, event in enumerate(events):
            event_where = f"{where}log event {index}: "
            message = event.get("message") if isinstance(event, dict) else None
            if not isinstance(message, str):
                _fail(self.out, "wrong_shape", "log event has no message", event_where)
                continue
            try:
                record = orjson.loads(message)
            except orjson.JSONDecodeError:
                _fail(self.out, "not_json", _json_detail(message), event_where)
                continue
            self.record(record, event_where)

    def lambda_awslogs(self, awslogs: dict[str, Any], where: str, depth: int) -> None:
        data = awslogs.get("data")
        text = data.encode() if isinstance(data, str) else b""
        decoded = _b64decode(text, strict=True)
        if decoded is None:
            _fail(self.out, "bad_base64", "awslogs.data is not base64", where)
            return
        self.blob(decoded, where, depth + 1, lines=False)

    def lookup_events(self, obj: dict[str, Any], where: str) -> None:
        if "CloudTrailEvent" in obj:
            self.lookup_item(obj, where)
            return
        events = obj["Events"]
        if not isinstance(events, list):
            _fail(self.out, "wrong_shape", "Events is not a list", where)
            return
        for index, item in enumerate(events):
            self.lookup_item(item, f"{where}event {index}: ")

    def lookup_item(self, item: object, where: str) -> None:
        text = item.get("CloudTrailEvent") if isinstance(item, dict) else None
        if not isinstance(text, str):
            # The CLI's Insights view lists the records themselves.
            self.record(item, where)
            return
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError:
            _fail(self.out, "not_json", _json_detail(text), where)
            return
        self.record(record, where)

    def wrapper(self, obj: dict[str, Any], where: str, depth: int) -> None:
        """Unwrap {"event": ...}-style test and vendor wrappers, or fail.

        Only when exactly one wrapper key holds a recognised CloudTrail envelope,
        so an arbitrary object with a "data" or "message" field is not guessed at.
        """
        found: list[tuple[str, object]] = []
        for key in _WRAPPER_KEYS:
            inner = _wrapped(obj.get(key))
            if inner is not None:
                found.append((key, inner))
        if len(found) != 1:
            detail = "JSON object is not a CloudTrail record or envelope"
            _fail(self.out, "not_cloudtrail", detail, where)
            return

        self.mark("wrapper")
        self.value(found[0][1], where, depth + 1)

    # Records.

    def record(self, item: object, where: str) -> None:
        if not isinstance(item, dict):
            detail = f"record is a JSON {type(item).__name__}, not an object"
            _fail(self.out, "wrong_shape", detail, where)
            return
        if _is_insight(item):
            self.skip("insight")
            return
        if _DIGEST_KEYS.intersection(item):
            self.skip("digest")
            return

        try:
            self.out.records.append(record_from_dict(item))
        except RecordError as exc:
            _fail(self.out, "not_cloudtrail", str(exc), where)

    def skip(self, reason: str) -> None:
        self.out.skipped[reason] = self.out.skipped.get(reason, 0) + 1

    def mark(self, envelope: str) -> None:
        if self.out.envelope == "unknown":
            self.out.envelope = envelope


def _kind(obj: dict[str, Any]) -> str | None:
    """The envelope a JSON object is, by its keys alone, or None."""
    if "Records" in obj:
        return "records_file"
    if _DIGEST_KEYS.intersection(obj):
        return "digest"
    if "logEvents" in obj or "awslogs" in obj:
        return "cloudwatch_logs"
    if "detail-type" in obj and "detail" in obj:
        return "eventbridge"
    if isinstance(obj.get("Events"), list) or isinstance(
        obj.get("CloudTrailEvent"), str
    ):
        return "lookup_events"
    if _RECORD_KEYS.intersection(obj):
        return "record"
    return None


def _wrapped(value: object) -> object | None:
    """The CloudTrail envelope a wrapper key holds, decoded, or None."""
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    if isinstance(value, list):
        first = next((item for item in value if isinstance(item, dict)), None)
        return value if first is not None and _kind(first) is not None else None
    if isinstance(value, dict) and _kind(value) is not None:
        return value
    return None


def _is_insight(item: dict[str, Any]) -> bool:
    return (
        item.get("eventCategory") == "Insight"
        or item.get("eventType") == "AwsCloudTrailInsight"
        or "insightDetails" in item
    )


def _gunzip(data: bytes, limit: int) -> bytes | DecodeFailure:
    """Inflate every gzip member, refusing output past `limit` bytes."""
    chunks: list[bytes] = []
    total = 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            chunk = inflater.decompress(data, limit + 1 - total)
        except zlib.error as exc:
            return DecodeFailure("bad_gzip", f"gzip: {exc}")
        total += len(chunk)
        chunks.append(chunk)
        if total > limit:
            detail = f"gzip inflates past {limit} bytes in all"
            return DecodeFailure("too_large", detail)
        if not inflater.eof:
            return DecodeFailure("bad_gzip", "gzip stream is truncated")
        # Concatenated members are valid gzip; trailing zero padding is tolerated.
        data = inflater.unused_data.lstrip(b"\x00")
        if data and not data.startswith(_GZIP_MAGIC):
            return DecodeFailure("bad_gzip", "trailing bytes after the gzip stream")
    return b"".join(chunks)


def _b64decode(data: bytes, *, strict: bool = False) -> bytes | None:
    """Decode base64; non-strict skips line breaks, strict rejects anything odd."""
    try:
        decoded = binascii.a2b_base64(data, strict_mode=strict)
    except binascii.Error:
        return None
    return decoded or None


def _repair_utf8(data: bytes) -> bytes | None:
    """`data` with invalid UTF-8 replaced by U+FFFD, or None when it was valid.

    orjson rejects a whole document for one bad byte in a string; a log file
    should not lose every record for that.
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace").encode("utf-8")
    return None


def _json_detail(data: bytes | str) -> str:
    return f"not JSON ({len(data)} bytes)"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(out: Unwrapped, reason: DecodeReason, detail: str, where: str) -> None:
    if len(out.failures) >= MAX_LISTED_FAILURES:
        out.unlisted_failures += 1
        return
    out.failures.append(DecodeFailure(reason, f"{where}{detail}"))
