"""Replay CloudTrail files through the detectors into the alert store.

The same decoding and detectors as the Kafka consumer, over files on disk: one
DetectionEngine for the whole run, findings stored file by file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import structlog
from rich.console import Console
from rich.table import Table

from detectors.detector import Finding
from detectors.engine import DetectionEngine
from service import metrics
from service.dead_letters import DeadLetter
from service.envelopes import MAX_FILE_BYTES, Unwrapped, unwrap
from service.inputs import read_input
from service.store import AlertStore

_log = structlog.get_logger(__name__)

# Findings are saved in transactions of at most this many, so one huge file
# does not become one huge transaction.
_SAVE_CHUNK = 1000

FileOutcome = Literal["decoded", "partly_decoded", "undecodable", "nothing_to_do"]


@dataclass(frozen=True, slots=True)
class FileFailure:
    """What in one input file could not be decoded: counts by reason, first detail."""

    path: str
    reasons: Counter[str]
    detail: str

    @property
    def reason(self) -> str:
        """The most common reason."""
        return self.reasons.most_common(1)[0][0]

    def describe(self) -> str:
        """`detail`, prefixed with the counts when more than one thing failed."""
        if self.reasons.total() == 1:
            return self.detail
        counts = ", ".join(f"{r} x{n}" for r, n in self.reasons.most_common())
        return f"{counts}; first: {self.detail}"


@dataclass(slots=True)
class ReplaySummary:
    """What a replay read, skipped, found and could not decode."""

    files: int = 0
    files_by_outcome: Counter[FileOutcome] = field(default_factory=Counter)
    records: int = 0
    records_by_envelope: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)
    new_alerts: Counter[str] = field(default_factory=Counter)
    failures: list[FileFailure] = field(default_factory=list)


async def replay_files(
    files: Iterable[Path],
    engine: DetectionEngine,
    store: AlertStore,
    *,
    on_file_done: Callable[[Path], None] | None = None,
) -> ReplaySummary:
    """Decode every file, run the engine on its records and store the results.

    Files that cannot be read or decoded are reported in the summary and kept
    as dead letters; they never stop the replay.
    """
    metrics.init_metrics(engine.detector_ids)
    summary = ReplaySummary()
    for path in files:
        await _replay_file(path, engine, store, summary)
        if on_file_done is not None:
            on_file_done(path)
    # Calls still waiting for an AssumeRole that never came are ours after all.
    await _save_findings(store, summary, engine.drain())

    _log.info(
        "replay.finished",
        files=summary.files,
        records=summary.records,
        findings=summary.findings.total(),
        new_alerts=summary.new_alerts.total(),
        undecodable_files=len(summary.failures),
    )
    return summary


async def _replay_file(
    path: Path, engine: DetectionEngine, store: AlertStore, summary: ReplaySummary
) -> None:
    summary.files += 1
    try:
        payload = read_input(path)
    except OSError as exc:
        detail = exc.strerror or type(exc).__name__
        await _keep_failures(store, summary, path, [("unreadable", detail)], b"")
        summary.files_by_outcome["undecodable"] += 1
        return

    unwrapped = unwrap(payload, max_bytes=MAX_FILE_BYTES)
    _count(unwrapped)
    summary.files_by_outcome[_outcome(unwrapped)] += 1
    summary.records += len(unwrapped.records)
    if unwrapped.records:
        summary.records_by_envelope[unwrapped.envelope] += len(unwrapped.records)
    summary.skipped.update(unwrapped.skipped)

    findings = [f for record in unwrapped.records for f in engine.process(record)]
    await _save_findings(store, summary, findings)

    failures = [(failure.reason, failure.detail) for failure in unwrapped.failures]
    await _keep_failures(store, summary, path, failures, payload)


async def _save_findings(
    store: AlertStore, summary: ReplaySummary, findings: Sequence[Finding]
) -> None:
    for finding in findings:
        summary.findings[finding.detector] += 1
        metrics.FINDINGS.labels(finding.detector).inc()
    for start in range(0, len(findings), _SAVE_CHUNK):
        changes = await store.save_findings(findings[start : start + _SAVE_CHUNK])
        for alert in (change.alert for change in changes if change.created):
            summary.new_alerts[alert.detector] += 1
            metrics.ALERTS.labels(alert.detector, alert.severity).inc()


async def _keep_failures(
    store: AlertStore,
    summary: ReplaySummary,
    path: Path,
    failures: Sequence[tuple[str, str]],
    payload: bytes,
) -> None:
    """Report a file's failures once, and keep the file as one dead letter."""
    if not failures:
        return

    reasons = Counter(reason for reason, _ in failures)
    failure = FileFailure(str(path), reasons, failures[0][1])
    summary.failures.append(failure)
    _log.warning(
        "replay.undecodable",
        file=failure.path,
        reason=failure.reason,
        failures=reasons.total(),
        detail=failure.detail,
    )
    letter = DeadLetter(
        source=failure.path,
        partition=None,
        offset=None,
        reason=failure.reason,
        detail=failure.describe(),
        payload=payload,
        received_at=datetime.now(UTC),
    )
    await store.save_dead_letters([letter])


def _count(unwrapped: Unwrapped) -> None:
    # The same series `trailwarden run` feeds, so `replay --serve` shows them too.
    if unwrapped.records:
        metrics.RECORDS_DECODED.labels(unwrapped.envelope).inc(len(unwrapped.records))
    for reason, count in unwrapped.skipped.items():
        metrics.RECORDS_SKIPPED.labels(reason).inc(count)
    for failure in unwrapped.failures:
        metrics.DECODE_FAILURES.labels(failure.reason).inc()


def _outcome(unwrapped: Unwrapped) -> FileOutcome:
    if unwrapped.failures:
        return "partly_decoded" if unwrapped.records else "undecodable"
    return "decoded" if unwrapped.records else "nothing_to_do"


def print_summary(
    console: Console, summary: ReplaySummary, detector_ids: Sequence[str]
) -> None:
    """Print what was read, what was found and what could not be decoded."""
    outcomes = summary.files_by_outcome
    totals = Table(title="Replay summary", show_header=False, title_justify="left")
    totals.add_row("files read", str(summary.files))
    for outcome in ("decoded", "partly_decoded", "undecodable", "nothing_to_do"):
        totals.add_row(f"  {outcome.replace('_', ' ')}", str(outcomes[outcome]))
    totals.add_row("records", str(summary.records))
    for envelope, count in sorted(summary.records_by_envelope.items()):
        totals.add_row(f"  from {envelope}", str(count))
    for reason, count in sorted(summary.skipped.items()):
        totals.add_row(f"skipped ({reason})", str(count))
    console.print(totals)

    detections = Table(title="Alerts by detector", title_justify="left")
    detections.add_column("detector")
    detections.add_column("findings", justify="right")
    detections.add_column("new alerts", justify="right")
    for detector in detector_ids:
        found, new = summary.findings[detector], summary.new_alerts[detector]
        detections.add_row(detector, str(found), str(new))
    detections.add_row(
        "total", str(summary.findings.total()), str(summary.new_alerts.total())
    )
    console.print(detections)

    if summary.failures:
        failures = Table(title="Inputs that could not be decoded", title_justify="left")
        for column in ("file", "reason", "detail"):
            failures.add_column(column, overflow="fold")
        for failure in summary.failures:
            failures.add_row(failure.path, failure.reason, failure.describe())
        console.print(failures)
