"""Tests for the engine's state: restore between batches, event time, duplicates,
calls held for their AssumeRole, and bounded size over a long stream.

Streams are derived from the real stratus LeaveOrganization detonation (an
AssumeRole and the call made with the key it returned): the caller is moved to a
vendor account, and keys, event ids and times are renumbered per session.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.detector import Finding
from detectors.engine import DetectionEngine
from detectors.sessions import Session, SessionBook
from detectors.state import StateDelta, StateEntry
from detectors.third_parties import Policy, parse_policy
from service.records import CloudTrailRecord, record_from_dict

DATA = Path(__file__).parent.parent / "data" / "detectors"
OURS = "307578594326"
VENDOR = "444455556666"
START = datetime(2024, 8, 5, 8, 0, tzinfo=UTC)

_LEAVE_ORG = json.loads((DATA / "stratus_organizations_leave.json").read_text())

POLICY = parse_policy(
    {
        "organization": {"accounts": [OURS]},
        "third_parties": [
            {
                "id": "acme",
                "accounts": [VENDOR],
                "require_mfa": True,
                "networks": ["203.0.113.0/24"],
            }
        ],
    }
)


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _session(
    n: int, start: datetime, *, vendor: bool = True, calls: int = 2
) -> list[dict[str, Any]]:
    """AssumeRole number `n` at `start` (15 min credentials), then `calls` calls
    five minutes apart and one more after the credentials expired."""
    assume = orjson.loads(orjson.dumps(_LEAVE_ORG[0]))
    key = f"ASIA{n:016X}"
    if vendor:
        assume["userIdentity"]["accountId"] = VENDOR
        assume["userIdentity"]["arn"] = f"arn:aws:iam::{VENDOR}:user/christophe"
    assume["eventID"] = f"assume-{n}"
    assume["eventTime"] = _z(start)
    credentials = assume["responseElements"]["credentials"]
    credentials["accessKeyId"] = key
    del credentials["expiration"]
    session = [assume]
    for i in [*range(calls), 4]:
        call = orjson.loads(orjson.dumps(_LEAVE_ORG[1]))
        call["eventID"] = f"call-{n}-{i}"
        call["eventTime"] = _z(start + timedelta(minutes=5 * i))
        call["userIdentity"]["accessKeyId"] = key
        session.append(call)
    return session


def _story(sessions: int = 8) -> list[dict[str, Any]]:
    """Vendor and own sessions ten minutes apart, in event-time order."""
    raws = []
    for n in range(sessions):
        raws += _session(n, START + timedelta(minutes=10 * n), vendor=n % 3 != 2)
    return raws


def _records(raws: Iterable[dict[str, Any]]) -> list[CloudTrailRecord]:
    return [record_from_dict(raw) for raw in raws]


def _test_data_records() -> list[CloudTrailRecord]:
    raws: list[Any] = []
    for path in sorted(DATA.iterdir()):
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            raws += [json.loads(line) for line in text.splitlines()]
        else:
            data = json.loads(text)
            raws += data if isinstance(data, list) else [data]
    return _records(raws)


def _run(engine: DetectionEngine, records: Iterable[CloudTrailRecord]) -> list[Finding]:
    return [f for record in records for f in engine.process(record)]


def _apply(entries: dict[tuple[str, str], StateEntry], delta: StateDelta) -> None:
    for kind, key in delta.deletes:
        entries.pop((kind, key), None)
    for entry in delta.upserts:
        entries[(entry.kind, entry.key)] = entry


def _uninterrupted(
    policy: Policy, records: Sequence[CloudTrailRecord]
) -> tuple[list[Finding], dict[tuple[str, str], StateEntry]]:
    engine = DetectionEngine(policy)
    findings = _run(engine, records)
    entries: dict[tuple[str, str], StateEntry] = {}
    _apply(entries, engine.take_changes())
    return findings + engine.drain(), entries


def _in_batches(
    policy: Policy, records: Sequence[CloudTrailRecord], cuts: Iterable[int]
) -> tuple[list[Finding], dict[tuple[str, str], StateEntry]]:
    """A new engine per batch, restored from every change taken so far."""
    entries: dict[tuple[str, str], StateEntry] = {}
    findings: list[Finding] = []
    bounds = [0, *sorted(set(cuts)), len(records)]
    engine = DetectionEngine(policy)
    for start, end in itertools.pairwise(bounds):
        engine = DetectionEngine(policy)
        engine.restore(list(entries.values()))
        findings += _run(engine, records[start:end])
        _apply(entries, engine.take_changes())
    final = dict(entries)
    return findings + engine.drain(), final


def _alerts(findings: Iterable[Finding]) -> Counter[tuple[str, str, str | None]]:
    return Counter((f.detector, f.dedup_key, f.event_id) for f in findings)


STORY = _records(_story())
# Calls delivered before their AssumeRole, repeats, and the unrelated test records.
MIXED = [*STORY[5:], *STORY[:5], STORY[7], STORY[2], *_test_data_records()]


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(0, len(MIXED)), max_size=8))
def test_engine_restore_between_any_batches_equals_uninterrupted(
    cuts: list[int],
) -> None:
    expected, expected_state = _uninterrupted(POLICY, MIXED)

    findings, state = _in_batches(POLICY, MIXED, cuts)

    assert findings == expected
    assert state == expected_state


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_engine_restore_over_shared_corpus_equals_uninterrupted(
    corpus_records: list[CloudTrailRecord], corpus_policy: Policy, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(corpus_records)), max_size=12))
    expected, expected_state = _uninterrupted(corpus_policy, corpus_records)

    findings, state = _in_batches(corpus_policy, corpus_records, cuts)

    assert findings == expected
    assert state == expected_state


@settings(max_examples=60, deadline=None)
@given(
    delays=st.lists(st.integers(0, 29 * 60), min_size=len(STORY), max_size=len(STORY)),
    repeats=st.lists(st.integers(0, len(STORY) - 1), max_size=6),
)
def test_engine_late_out_of_order_and_repeated_gives_in_order_alerts(
    delays: list[int], repeats: list[int]
) -> None:
    """Each record (and some repeats) delivered up to 29 minutes after its time."""
    deliveries = [
        (record.event_time + timedelta(seconds=delay), i, record)
        for i, (record, delay) in enumerate(zip(STORY, delays, strict=True))
        if record.event_time is not None
    ]
    deliveries += [
        (t + timedelta(seconds=1), len(STORY) + n, r)
        for n, (t, _, r) in enumerate(deliveries[i] for i in repeats)
    ]
    arrived = [record for _, _, record in sorted(deliveries, key=lambda d: d[:2])]
    in_order = DetectionEngine(POLICY)
    expected = _run(in_order, STORY) + in_order.drain()
    engine = DetectionEngine(POLICY)

    findings = _run(engine, arrived) + engine.drain()

    assert _alerts(findings) == _alerts(expected)
    assert engine.counters.late == 0
    assert engine.counters.duplicate >= len(repeats) - len(set(repeats))


def test_engine_call_before_its_assume_role_is_attributed_on_arrival() -> None:
    assume, first, second, expired = _records(_session(1, START))
    engine = DetectionEngine(POLICY)

    held = engine.process(second) + engine.process(first)
    sizes = engine.state_sizes()
    released = engine.process(assume)

    assert held == []
    assert sizes["pending"] == 2
    assert [f.event_id for f in released] == (
        ["assume-1"] * 2 + ["call-1-0"] * 3 + ["call-1-1"] * 3
    )
    assert engine.state_sizes()["pending"] == 0
    assert engine.process(expired) == []


def test_engine_held_call_is_ours_once_the_watermark_passes_it() -> None:
    """An own session's call: no AssumeRole comes, so it is released after grace."""
    _, call, *_ = _records(_session(1, START, vendor=False))
    later = _records(_session(2, START + timedelta(minutes=31)))[0]
    engine = DetectionEngine(POLICY)
    engine.process(call)

    findings = engine.process(later)

    assert [f.event_id for f in findings] == ["assume-2", "assume-2"]
    assert engine.state_sizes()["pending"] == 0
    assert engine.take_changes().deletes == [("pending", f"{OURS}/call-1-0")]


def test_engine_drain_releases_held_calls_as_without_session() -> None:
    _, first, second, _ = _records(_session(1, START))
    engine = DetectionEngine(POLICY)
    engine.process(first)
    engine.process(second)

    assert engine.drain() == []
    assert engine.state_sizes()["pending"] == 0
    assert engine.drain() == []


@pytest.mark.parametrize(
    "change",
    [
        {"userIdentity": {"type": "IAMUser", "accountId": OURS}},
        {"eventID": None},
        {"eventType": "AwsServiceEvent"},
    ],
    ids=["not_a_session", "no_event_id", "service_event"],
)
def test_engine_records_that_need_no_session_are_never_held(
    change: dict[str, Any],
) -> None:
    raw = _session(1, START)[1]
    if "userIdentity" in change:
        raw["userIdentity"].update(change.pop("userIdentity"))
    raw.update(change)
    engine = DetectionEngine(POLICY)

    engine.process(record_from_dict(raw))

    assert engine.state_sizes()["pending"] == 0


@pytest.mark.parametrize(
    ("sessions", "key", "elsewhere"),
    [(0, "ASIA0000000000000001", 1), (0, None, 0), (1, "ASIA0000000000000001", 0)],
    ids=["unknown_key", "no_key", "known_key"],
)
def test_engine_registered_issuer_role_is_attributed_at_once_and_counted(
    sessions: int, key: str | None, elsewhere: int
) -> None:
    """Counted when its AssumeRole was not seen here: it may be on another partition."""
    role = _LEAVE_ORG[1]["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"]
    assume, call, *_ = _session(1, START, vendor=False)
    call["userIdentity"]["accessKeyId"] = key
    policy = parse_policy(
        {
            "organization": {"accounts": [OURS]},
            "third_parties": [{"id": "acme", "accounts": [VENDOR], "roles": [role]}],
        }
    )
    engine = DetectionEngine(policy)
    _run(engine, _records([assume][:sessions]))

    findings = engine.process(record_from_dict(call))

    assert {f.third_party for f in findings} == {"acme"}
    assert engine.counters.session_elsewhere == elsewhere
    assert engine.state_sizes()["pending"] == 0


def test_engine_record_that_cannot_be_stored_is_not_held() -> None:
    raw = _session(1, START)[1]
    raw["requestParameters"] = {"big": 2**70}
    engine = DetectionEngine(POLICY)

    engine.process(record_from_dict(raw))

    assert engine.state_sizes()["pending"] == 0


def test_engine_duplicate_gives_no_findings_and_is_counted() -> None:
    assume, call, *_ = _records(_session(1, START))
    engine = DetectionEngine(POLICY)
    first = _run(engine, [assume, call])

    again = _run(engine, [assume, call])

    assert len(first) == 5
    assert again == []
    assert engine.counters.duplicate == 2


def test_engine_duplicate_beyond_horizon_is_checked_again() -> None:
    assume = _records(_session(1, START))[0]
    later = _records(_session(2, START + timedelta(hours=2)))[0]
    engine = DetectionEngine(POLICY, seen_horizon=timedelta(hours=1))
    engine.process(assume)
    engine.process(later)

    assert len(engine.process(assume)) == 2
    assert engine.counters.duplicate == 0


def test_engine_late_record_is_counted_and_still_checked() -> None:
    assume, call, _, _ = _records(_session(1, START))
    later = _records(_session(2, START + timedelta(minutes=20)))[0]
    engine = DetectionEngine(POLICY, grace=timedelta(minutes=10))
    engine.process(assume)
    engine.process(later)

    findings = engine.process(call)

    assert engine.counters.late == 1
    assert [f.detector for f in findings] == [
        "mfa-missing",
        "source-network-not-allowed",
        "high-risk-action",
    ]
    assert {f.third_party for f in findings} == {"acme"}


def test_engine_late_record_of_expired_session_is_not_attributed() -> None:
    assume, call, _, _ = _records(_session(1, START))
    later = _records(_session(2, START + timedelta(hours=2)))[0]
    engine = DetectionEngine(POLICY)
    engine.process(assume)
    engine.process(later)

    assert engine.process(call) == []
    assert engine.counters.late == 1


def test_engine_records_without_time_change_no_clock() -> None:
    raw = _session(1, START)[0]
    del raw["eventTime"]
    engine = DetectionEngine(POLICY)

    findings = engine.process(record_from_dict(raw))

    assert len(findings) == 2
    assert engine.state_sizes() == {"clock": 0, "session": 0, "seen": 0, "pending": 0}


def test_engine_state_stays_bounded_over_days_of_sessions() -> None:
    """50,000 AssumeRole + call pairs, one pair every 8.64 s: five days."""
    policy = parse_policy(
        {
            "organization": {"accounts": [OURS]},
            "third_parties": [{"id": "acme", "accounts": [VENDOR]}],
        }
    )
    engine = DetectionEngine(policy, seen_horizon=timedelta(hours=1))
    template = _session(0, START, calls=1)[:2]
    entries: dict[tuple[str, str], StateEntry] = {}
    largest = 0
    for n in range(50_000):
        start = START + timedelta(seconds=8.64 * n)
        for raw, event_id in zip(template, ("a", "c"), strict=True):
            raw["eventID"] = f"{event_id}-{n}"
            raw["eventTime"] = _z(start)
        template[0]["responseElements"]["credentials"]["accessKeyId"] = f"ASIA{n:016X}"
        template[1]["userIdentity"]["accessKeyId"] = f"ASIA{n:016X}"
        for raw in template:
            engine.process(record_from_dict(raw))
        if n % 5_000 == 4_999:
            _apply(entries, engine.take_changes())
            largest = max(largest, sum(engine.state_sizes().values()))

    sizes = engine.state_sizes()
    assert sizes["session"] < 400
    assert sizes["seen"] < 2 * 5_000
    assert largest < 12_000
    assert len(entries) == sum(sizes.values())


def test_engine_take_changes_is_empty_without_new_records() -> None:
    engine = DetectionEngine(POLICY)
    _run(engine, STORY[:3])
    first = engine.take_changes()

    second = engine.take_changes()

    assert first
    assert {e.kind for e in first.upserts} == {"clock", "session", "seen"}
    assert not second
    assert second == StateDelta()


def test_engine_entries_have_documented_formats() -> None:
    assume, _, second, _ = _records(_session(1, START))
    engine = DetectionEngine(POLICY)
    engine.process(second)
    engine.process(assume)
    engine.process(_records(_session(2, START + timedelta(minutes=1)))[2])

    upserts = {(e.kind, e.key): e for e in engine.take_changes().upserts}

    clock = upserts[("clock", "latest_event_time")]
    assert orjson.loads(clock.value) == "2024-08-05T08:06:00+00:00"
    session = upserts[("session", "ASIA0000000000000001")]
    assert orjson.loads(session.value) == {
        "party": "acme",
        "account": VENDOR,
        "start": "2024-08-05T08:00:00+00:00",
    }
    assert session.expires_at == START + timedelta(minutes=15)
    seen = upserts[("seen", f"{OURS}/call-1-1")]
    assert (seen.value, seen.expires_at) == (
        b"null",
        START + timedelta(hours=24, minutes=5),
    )
    pending = upserts[("pending", f"{OURS}/call-2-1")]
    assert orjson.loads(pending.value)["eventID"] == "call-2-1"
    assert pending.expires_at == START + timedelta(minutes=6)


def test_engine_restore_needs_a_fresh_engine() -> None:
    engine = DetectionEngine(POLICY)
    engine.process(STORY[0])

    with pytest.raises(RuntimeError, match="fresh engine"):
        engine.restore([])


@pytest.mark.parametrize(
    "entry",
    [
        StateEntry("windows", "x", b"{}", None),
        StateEntry("clock", "other", b'"2024-08-05T08:00:00+00:00"', None),
        StateEntry("clock", "latest_event_time", b"not json", None),
        StateEntry("session", "ASIAX", b"[]", START),
        StateEntry("session", "ASIAX", b'{"party": "acme"}', START),
        StateEntry("session", "ASIAX", b'{"start": "2024"}', None),
        StateEntry("seen", "x/y", b"null", None),
        StateEntry("pending", "x/y", b"[]", START),
        StateEntry(
            "pending",
            "x/y",
            b'{"eventSource": "s3.amazonaws.com", "eventName": "ListBuckets"}',
            START,
        ),
    ],
    ids=[
        "unknown_kind",
        "unknown_clock",
        "bad_clock",
        "session_not_object",
        "session_no_start",
        "session_no_expiry",
        "seen_no_expiry",
        "pending_not_record",
        "pending_no_key",
    ],
)
def test_engine_restore_skips_unusable_entries(entry: StateEntry) -> None:
    engine = DetectionEngine(POLICY)

    engine.restore([entry])

    assert engine.state_sizes() == {"clock": 0, "session": 0, "seen": 0, "pending": 0}


def test_engine_restored_session_of_removed_party_is_not_theirs() -> None:
    assume, call, *_ = _records(_session(1, START))
    engine = DetectionEngine(POLICY)
    engine.process(assume)
    entries = engine.take_changes().upserts
    others = parse_policy(
        {
            "organization": {"accounts": [OURS]},
            "third_parties": [{"id": "other", "accounts": ["999999999999"]}],
        }
    )
    restored = DetectionEngine(others)

    restored.restore(entries)

    assert restored.state_sizes()["session"] == 1
    assert restored.process(call) == []
    assert restored.state_sizes()["pending"] == 0


def test_engine_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="grace"):
        DetectionEngine(POLICY, grace=timedelta(minutes=-1))


@pytest.mark.parametrize("max_sessions", [1, 2])
def test_engine_sessions_over_the_cap_go_earliest_expiry_first(
    max_sessions: int,
) -> None:
    engine = DetectionEngine(POLICY, max_sessions=max_sessions)
    sessions = [_records(_session(n, START + timedelta(minutes=n))) for n in range(3)]
    _run(engine, [s[0] for s in sessions])

    oldest = engine.process(sessions[0][1])
    newest = engine.process(sessions[2][1])

    assert engine.state_sizes()["session"] == max_sessions
    assert oldest == []
    assert {f.third_party for f in newest} == {"acme"}


def test_engine_own_session_known_from_its_assume_role_is_not_held() -> None:
    assume, call, *_ = _records(_session(1, START, vendor=False))
    engine = DetectionEngine(POLICY)

    findings = _run(engine, [assume, call])

    assert findings == []
    assert engine.state_sizes()["session"] == 1
    assert engine.state_sizes()["pending"] == 0


def test_engine_restore_reads_back_a_bad_session_start_as_nothing() -> None:
    engine = DetectionEngine(POLICY)

    engine.restore([StateEntry("session", "ASIAX", b'{"start": "2024-13"}', START)])

    assert engine.state_sizes()["session"] == 0


def test_session_book_replaced_session_leaves_a_stale_expiry_behind() -> None:
    book = SessionBook(max_sessions=1)
    book.open("ASIAA", Session(None, START, START + timedelta(minutes=30)))
    book.open("ASIAA", Session(None, START, START + timedelta(hours=1)))
    book.open("ASIAA", Session(None, START, START + timedelta(hours=1)))

    book.open("ASIAB", Session(None, START, START + timedelta(hours=2)))

    assert list(book.by_key) == ["ASIAB"]
