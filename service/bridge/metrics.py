"""The bridge's Prometheus metrics, prefixed `trailwarden_bridge_`.

Label values are bounded: source (sqs, backfill, eventbridge) and reason.
"""

from __future__ import annotations

from typing import get_args

from prometheus_client import Counter, Gauge, Histogram

from service.envelopes import DecodeReason

FILES_BRIDGED = Counter(
    "trailwarden_bridge_files_bridged",
    "CloudTrail log files whose records Kafka acknowledged.",
    ["source"],
)
FILES_SKIPPED = Counter(
    "trailwarden_bridge_files_skipped",
    "Objects skipped on purpose: digests, Insights, non-creation notifications.",
    ["reason"],
)
RECORDS_BRIDGED = Counter(
    "trailwarden_bridge_records_bridged",
    "CloudTrail records produced to Kafka and acknowledged.",
    ["source"],
)
FAILURES = Counter(
    "trailwarden_bridge_failures",
    "Inputs the bridge could not pass on, by reason (dead-lettered or retried).",
    ["reason"],
)
SQS_IN_FLIGHT = Gauge(
    "trailwarden_bridge_sqs_messages_in_flight",
    "SQS messages received and not yet deleted or released.",
)
PRODUCE_SECONDS = Histogram(
    "trailwarden_bridge_produce_seconds",
    "Time from producing a file's (or an event's) records to the last Kafka ack.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

SOURCES = ("sqs", "backfill", "eventbridge")
SKIP_REASONS = ("digest", "insight", "not_created", "test_event")
FAILURE_REASONS = (
    "no_such_key",
    "no_such_bucket",
    "access_denied",
    "archived",
    "s3_unavailable",
    "kafka_unavailable",
    "bad_notification",
    "unauthorized",
    "malformed_event",
    "unencodable_record",
    "unexpected_error",
    *get_args(DecodeReason),
)


def init_bridge_metrics() -> None:
    """Create every label child up front so each series is exported from zero."""
    for source in SOURCES:
        FILES_BRIDGED.labels(source)
        RECORDS_BRIDGED.labels(source)
    for reason in SKIP_REASONS:
        FILES_SKIPPED.labels(reason)
    for reason in FAILURE_REASONS:
        FAILURES.labels(reason)
