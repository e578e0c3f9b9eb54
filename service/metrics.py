"""Every Prometheus metric of Trailwarden, defined once in the default registry.

Label values are bounded sets (detector, severity, reason, outcome, partition,
state kind).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import get_args

from prometheus_client import Counter, Gauge, Histogram

from detectors.detector import SEVERITIES
from detectors.state import STATE_KINDS
from service.envelopes import DecodeReason

MESSAGES_CONSUMED = Counter("trailwarden_messages_consumed", "Kafka messages consumed.")
RECORDS_DECODED = Counter(
    "trailwarden_records_decoded",
    "CloudTrail records decoded, by the envelope they came in.",
    ["envelope"],
)
RECORDS_SKIPPED = Counter(
    "trailwarden_records_skipped",
    "Items recognised and skipped on purpose (digests, Insights, control messages).",
    ["reason"],
)
DECODE_FAILURES = Counter(
    "trailwarden_decode_failures",
    "Inputs that could not be decoded, by reason.",
    ["reason"],
)
ALERTS = Counter(
    "trailwarden_alerts",
    "New alerts stored (repeats merged into an alert are not counted).",
    ["detector", "severity"],
)
FINDINGS = Counter(
    "trailwarden_findings", "Findings raised by the detectors.", ["detector"]
)
CONSUMER_LAG = Gauge(
    "trailwarden_consumer_lag_messages",
    "Messages between the consumer's position and the partition's high watermark.",
    ["partition"],
)
PROCESSING_SECONDS = Histogram(
    "trailwarden_processing_seconds",
    "Time to decode, detect, store and commit one batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

CHECKPOINT_SECONDS = Histogram(
    "trailwarden_checkpoint_seconds",
    "Time to store one partition's batch with its state and next offset.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CHECKPOINT_ENTRIES = Histogram(
    "trailwarden_checkpoint_entries",
    "State entries written (upserted or deleted) by one checkpoint.",
    buckets=(0, 1, 5, 10, 50, 100, 500, 1000, 5000, 10000),
)
CHECKPOINT_BYTES = Histogram(
    "trailwarden_checkpoint_bytes",
    "Bytes of state values written by one checkpoint.",
    buckets=(0, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304),
)
CHECKPOINT_CONFLICTS = Counter(
    "trailwarden_checkpoint_conflicts",
    "Batches voided because another replica moved the partition's checkpoint.",
)
RESTORE_SECONDS = Histogram(
    "trailwarden_restore_seconds",
    "Time to load a partition's checkpoint into a fresh engine after assignment.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
STATE_ENTRIES = Gauge(
    "trailwarden_state_entries",
    "Live detector state entries over the partitions this replica owns, by kind.",
    ["kind"],
)
LATE_RECORDS = Counter(
    "trailwarden_late_records",
    "Records older than the event-time grace: windows skip them, other checks run.",
)
DUPLICATE_RECORDS = Counter(
    "trailwarden_duplicate_records",
    "Records seen before (same eventID and recipientAccountId), processed once.",
)
SESSION_ELSEWHERE = Counter(
    "trailwarden_session_elsewhere",
    "Records whose session was opened on another partition (producer keying).",
)

DECODE_REASONS: tuple[str, ...] = get_args(DecodeReason)
SKIP_REASONS = ("digest", "insight", "control_message")
ENVELOPES = (
    "record",
    "records_file",
    "json_lines",
    "json_array",
    "eventbridge",
    "cloudwatch_logs",
    "lookup_events",
)


def init_metrics(detector_ids: Iterable[str]) -> None:
    """Create every label child up front so each series is exported from zero."""
    for detector in detector_ids:
        FINDINGS.labels(detector)
        for severity in SEVERITIES:
            ALERTS.labels(detector, severity)
    for reason in DECODE_REASONS:
        DECODE_FAILURES.labels(reason)
    for reason in SKIP_REASONS:
        RECORDS_SKIPPED.labels(reason)
    for envelope in ENVELOPES:
        RECORDS_DECODED.labels(envelope)
    for kind in STATE_KINDS:
        STATE_ENTRIES.labels(kind)
