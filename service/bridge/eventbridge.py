"""`trailwarden bridge eventbridge`: an HTTP endpoint for EventBridge API destinations.

POST / (or /events) with the secret header; every event of the body is checked
and encoded, then all are produced and acknowledged before the 2xx. Anything
unauthenticated gets 401, a malformed event 400, Kafka not acknowledging 503.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.api.health import metrics_route
from service.bridge.metrics import FAILURES
from service.bridge.producer import (
    KafkaUnavailable,
    Message,
    RecordProducer,
    UnencodableRecord,
    encode_record,
)
from service.records import RecordError, record_from_dict

__all__ = ["MAX_BODY_BYTES", "MalformedEvent", "create_eventbridge_app", "parse_events"]

# EventBridge events are at most 256 KB; a batch of them stays well under this.
MAX_BODY_BYTES = 5 * 1024 * 1024

_log = structlog.get_logger(__name__)


class MalformedEvent(ValueError):
    """A body that is not CloudTrail events from EventBridge; says what is wrong."""


def parse_events(body: bytes) -> tuple[list[Message], int]:
    """The Kafka messages of one request body, and how many Insights were skipped.

    Accepts one EventBridge event or a JSON array of them; every event is checked
    and encoded, so nothing is produced from a body with one bad event. Raises
    MalformedEvent.
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson stops at 1024 levels; say so rather than "not JSON".
        problem = "nested too deeply" if "depth limit" in str(exc) else "not JSON"
        raise MalformedEvent(f"body is {problem} ({len(body)} bytes)") from exc
    items = value if isinstance(value, list) else [value]
    if not items:
        raise MalformedEvent("body is an empty JSON array")

    messages: list[Message] = []
    skipped = 0
    for index, item in enumerate(items):
        where = f"event {index}: " if isinstance(value, list) else ""
        detail = _cloudtrail_detail(item, where)
        if detail.get("eventCategory") == "Insight" or "insightDetails" in detail:
            skipped += 1
            continue
        account = item.get("account")
        try:
            record = record_from_dict(detail)
            message = encode_record(
                record, account if isinstance(account, str) else None
            )
        except (RecordError, UnencodableRecord) as exc:
            raise MalformedEvent(f"{where}detail: {exc}") from exc
        messages.append(message)
    return messages, skipped


def create_eventbridge_app(
    producer: RecordProducer, *, secret: str, header: str
) -> Starlette:
    """The endpoint's ASGI app, with /healthz and /metrics beside it."""
    expected = secret.encode()

    async def receive(request: Request) -> JSONResponse:
        supplied = request.headers.get(header, "").encode()
        if not hmac.compare_digest(supplied, expected):
            FAILURES.labels("unauthorized").inc()
            return _error(401, f"missing or wrong {header} header")
        body = await _read_body(request)
        if body is None:
            return _error(413, f"body is larger than {MAX_BODY_BYTES} bytes")
        try:
            messages, skipped = parse_events(body)
        except MalformedEvent as exc:
            FAILURES.labels("malformed_event").inc()
            _log.warning("bridge.event_malformed", error=str(exc))
            return _error(400, str(exc))

        try:
            await producer.send_records(messages, source="eventbridge")
        except KafkaUnavailable as exc:
            FAILURES.labels("kafka_unavailable").inc()
            _log.warning("bridge.event_not_acknowledged", error=str(exc))
            return _error(503, "Kafka did not acknowledge in time; retry later")
        return JSONResponse({"accepted": len(messages), "skipped_insights": skipped})

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/", receive, methods=["POST"]),
            Route("/events", receive, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            metrics_route(),
        ]
    )


def _cloudtrail_detail(item: object, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        kind = type(item).__name__
        raise MalformedEvent(f"{where}a JSON {kind}, not an EventBridge event")
    detail_type = item.get("detail-type")
    if not isinstance(detail_type, str) or not detail_type.endswith("via CloudTrail"):
        raise MalformedEvent(
            f"{where}detail-type {detail_type!r} does not end in 'via CloudTrail'"
        )
    detail = item.get("detail")
    if not isinstance(detail, dict):
        raise MalformedEvent(f"{where}detail is not a JSON object")
    return detail


async def _read_body(request: Request) -> bytes | None:
    """The body, or None past MAX_BODY_BYTES (read no further than that)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
