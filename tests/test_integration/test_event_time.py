"""Late, out-of-order and repeated records give the alerts of the same records in order.

Each account's records (vendor sessions: an AssumeRole, then calls with its key,
in bursts two hours apart) are produced, keyed by `recipientAccountId`, once in
event-time order and once as CloudTrail delivers them: each record up to 20
minutes late, so calls often come before their AssumeRole; a quarter of them
again, as EventBridge events or inside S3 log files; and one AssumeRole hours
later than the grace. `trailwarden run` stores the ordered records in SQLite and
the delivered ones in SQLite or PostgreSQL; the alerts are compared.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from fixtures_process import RunProcess
from fixtures_reference import Settle
from fixtures_stream import (
    OUR_ACCOUNTS,
    POLICY,
    START,
    assume_role_record,
    call_record,
    record_templates,
)
from prometheus_client.parser import text_string_to_metric_families

from service.alerts import Alert, AlertQuery
from service.envelopes import unwrap
from service.store import open_store

pytestmark = pytest.mark.integration


GRACE = timedelta(minutes=30)
MAX_DELAY = timedelta(minutes=20)  # within the grace: nothing is late
BURSTS = (timedelta(0), timedelta(hours=2), timedelta(hours=4))
SESSIONS_PER_BURST = 4
CALLS = 3
# A finding 50 minutes after one and 15 before another, within the one-hour
# dedup window of both, delivered after the later one: it bridges two alerts.
GAPS = (
    timedelta(hours=6),
    timedelta(hours=6, minutes=50),
    timedelta(hours=7, minutes=5),
)
DUPLICATE_SHARE = 0.25
_IDS = uuid.UUID("3c2f1e0a-5b7d-4c1e-9f0a-6d8e2b4c7a19")


@dataclass(frozen=True)
class Delivery:
    """When a record reaches Kafka; `copy` 0 is its first copy."""

    at: datetime
    copy: int
    record: dict[str, Any]


def _event_time(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["eventTime"])


def _session(
    index: int, label: str, opened: datetime, name: str, calls: int
) -> list[dict[str, Any]]:
    """An AssumeRole of the vendor in account `index`, then `calls` calls 40 s apart."""
    assume, call = record_templates()
    account = OUR_ACCOUNTS[index]
    key = f"ASIA{index}{label}EVENTTIME0000000"[:20]
    ids = [str(uuid.uuid5(_IDS, f"{account}/{label}/{n}")) for n in range(calls + 1)]
    records = [assume_role_record(assume, account, key, name, opened, ids[0])]
    records += [
        call_record(
            call, account, key, name, opened + timedelta(seconds=40 * n), ids[n]
        )
        for n in range(1, calls + 1)
    ]
    return records


def account_records(index: int) -> list[dict[str, Any]]:
    """One account's sessions: three bursts of four, two hours apart."""
    records: list[dict[str, Any]] = []
    for burst, offset in enumerate(BURSTS):
        for n in range(SESSIONS_PER_BURST):
            opened = START + offset + timedelta(minutes=9 * n, seconds=index)
            name = f"acme-sync-{n % 2}"
            records += _session(index, f"{burst}{n:02d}", opened, name, CALLS)
    return records


def bridging_sessions(index: int) -> list[list[dict[str, Any]]]:
    """Three one-call sessions of another actor, GAPS after the start."""
    return [
        _session(index, f"GAP{n}", START + gap + timedelta(seconds=index), "gap", 1)
        for n, gap in enumerate(GAPS)
    ]


def late_assume_role(index: int) -> dict[str, Any]:
    """An AssumeRole in the first burst, with no calls: it arrives past the grace."""
    at = START + timedelta(minutes=20, seconds=index)
    return _session(index, "LATE", at, "late", 0)[0]


def in_order(records: list[dict[str, Any]]) -> list[bytes]:
    """One message per record, by event time."""
    ordered = sorted(records, key=_event_time)
    return [orjson.dumps(record) for record in ordered]


def as_delivered(
    records: list[dict[str, Any]],
    bridging: list[list[dict[str, Any]]],
    late: dict[str, Any],
    rng: random.Random,
) -> tuple[list[bytes], int]:
    """The records late by up to MAX_DELAY, some twice, in mixed envelopes.

    AssumeRoles are the latest of all, so most sessions' first calls come before
    them; the middle bridging session comes after the last. `late` comes three
    hours after everything. Returns the messages and how many were copies.
    """
    deliveries = []
    for record in records:
        low = 0.6 if record["eventName"] == "AssumeRole" else 0.0
        deliveries.append(
            Delivery(_event_time(record) + MAX_DELAY * rng.uniform(low, 1), 0, record)
        )
    for session, delay in zip(bridging, (0, 1, 0), strict=True):
        deliveries += [
            Delivery(_event_time(r) + MAX_DELAY * delay, 0, r) for r in session
        ]
    for first in list(deliveries):
        if rng.random() < DUPLICATE_SHARE:
            again = first.at + timedelta(minutes=rng.uniform(0.1, 40))
            deliveries.append(Delivery(again, 1, first.record))
    deliveries.sort(key=lambda d: (d.at, d.copy))
    deliveries.append(Delivery(deliveries[-1].at + timedelta(hours=3), 0, late))

    copies = sum(d.copy for d in deliveries)
    return _envelopes(deliveries, rng), copies


def _envelopes(deliveries: list[Delivery], rng: random.Random) -> list[bytes]:
    """First copies alone or in S3 log files; copies as EventBridge events or files.

    Delivery order is kept: an open file is sent before the next single message.
    """
    messages: list[bytes] = []
    file: list[dict[str, Any]] = []
    for delivery in deliveries:
        record = delivery.record
        if file or rng.random() < 0.3:
            file.append(record)
            if len(file) >= rng.randint(2, 6):
                messages.append(orjson.dumps({"Records": file}))
                file = []
        elif delivery.copy:
            messages.append(orjson.dumps(_eventbridge(record, rng)))
        else:
            messages.append(orjson.dumps(record))
    if file:
        messages.append(orjson.dumps({"Records": file}))
    return messages


def _eventbridge(record: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """`record` as EventBridge delivers it: an "AWS API Call via CloudTrail" event."""
    return {
        "version": "0",
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "detail-type": "AWS API Call via CloudTrail",
        "source": f"aws.{record['eventSource'].split('.')[0]}",
        "account": record["recipientAccountId"],
        "time": record["eventTime"],
        "region": record["awsRegion"],
        "resources": [],
        "detail": record,
    }


async def produce_keyed(
    bootstrap: str, topic: str, partitions: list[list[bytes]]
) -> None:
    """Each partition's messages, keyed by its account, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for partition, messages in enumerate(partitions):
            key = OUR_ACCOUNTS[partition].encode()
            for value in messages:
                await producer.send(topic, value, key=key, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def content(alert: Alert) -> tuple[Any, ...]:
    return (
        alert.detector,
        alert.third_party,
        alert.account_id,
        alert.actor,
        alert.action,
        alert.severity,
        alert.first_seen,
        alert.last_seen,
        alert.count,
        tuple(sorted(alert.event_ids)),
    )


async def all_alerts(url: str) -> list[Alert]:
    store = open_store(url)
    await store.start()
    alerts: list[Alert] = []
    cursor = None
    try:
        while True:
            page = await store.list_alerts(AlertQuery(), limit=500, cursor=cursor)
            alerts += page.items
            if page.next_cursor is None:
                return alerts
            cursor = page.next_cursor
    finally:
        await store.close()


async def record_counters(process: RunProcess) -> dict[str, float] | None:
    """The process's duplicate and late record counters; None until it answers."""
    response = await process.get("/metrics")
    if response is None or response.status_code != 200:
        return None
    wanted = ("trailwarden_duplicate_records", "trailwarden_late_records")
    return {
        family.name: sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name in wanted
        for sample in family.samples
        if sample.name == f"{family.name}_total"
    }


def calls_before_assume_role(messages: list[bytes]) -> int:
    """How many calls arrive before the AssumeRole that returned their key."""
    opened: set[str] = set()
    early = 0
    for message in messages:
        for record in unwrap(message).records:
            key = record.identity.access_key_id
            if record.event_name == "AssumeRole":
                opened.add(record.raw["responseElements"]["credentials"]["accessKeyId"])
            elif key not in opened:
                early += 1
    return early


def _bridged(alert: Alert) -> bool:
    return alert.first_seen >= START + GAPS[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def delivered_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the run of the records as delivered stores its alerts."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'delivered.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def streams(rng: random.Random) -> tuple[list[list[bytes]], list[list[bytes]], int]:
    """Per partition, the messages in order and as delivered; how many copies."""
    ordered: list[list[bytes]] = []
    delivered: list[list[bytes]] = []
    copies = 0
    for index in range(len(OUR_ACCOUNTS)):
        records, bridging = account_records(index), bridging_sessions(index)
        late = late_assume_role(index)
        ordered.append(in_order([*records, *itertools.chain(*bridging), late]))
        messages, copied = as_delivered(records, bridging, late, rng)
        delivered.append(messages)
        copies += copied
    return ordered, delivered, copies


async def test_event_time_late_out_of_order_and_repeated_records_same_alerts(
    kafka_bootstrap: str,
    topic_factory: Callable[..., Awaitable[str]],
    run_process: Callable[..., Awaitable[RunProcess]],
    settle: Settle,
    wait_until: Callable[..., Awaitable[Any]],
    delivered_db: str,
    tmp_path: Path,
) -> None:
    """Compared by content, not id: an alert's id (and its event_time, title,
    source_ip and details) come from the finding that opened it, which depends on
    arrival order; everything an alert counts must not."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    ordered, delivered, copies = streams(random.Random(20240730))
    assert sum(calls_before_assume_role(p) for p in delivered) > 20
    envelopes = {unwrap(message).envelope for p in delivered for message in p}
    assert envelopes == {"record", "records_file", "eventbridge"}
    runs = {}
    for name, partitions, url in (
        ("ordered", ordered, f"sqlite:///{tmp_path / 'ordered.db'}"),
        ("delivered", delivered, delivered_db),
    ):
        topic = await topic_factory(len(partitions))
        await produce_keyed(kafka_bootstrap, topic, partitions)
        process = await run_process(
            kafka_bootstrap_servers=kafka_bootstrap,
            kafka_topic=topic,
            kafka_group_id=f"event-time-{topic}",
            policy_file=policy,
            database_url=url,
            event_grace_seconds=int(GRACE.total_seconds()),
        )
        runs[name] = (process, url, topic, [len(p) for p in partitions])
    counted = {}
    for name, (process, url, topic, ends) in runs.items():
        try:
            await settle(url, topic, ends)
        except pytest.fail.Exception:
            print(process.log())  # captured, and shown with the failure
            raise
        counted[name] = await wait_until(lambda p=process: record_counters(p), 20)
        assert await process.stop() == 0, process.log()

    expected = await all_alerts(runs["ordered"][1])
    actual = await all_alerts(runs["delivered"][1])

    assert counted["ordered"] == {
        "trailwarden_duplicate_records": 0,
        "trailwarden_late_records": 0,
    }
    assert counted["delivered"] == {
        "trailwarden_duplicate_records": copies,
        "trailwarden_late_records": len(OUR_ACCOUNTS),
    }
    assert_same_alerts(actual, expected)
    # The AssumeRole later than the grace is still checked by every detector.
    late_ids = {late_assume_role(i)["eventID"] for i in range(len(OUR_ACCOUNTS))}
    late_detectors = sorted(a.detector for a in actual if late_ids & set(a.event_ids))
    assert late_detectors
    assert late_detectors == sorted(
        a.detector for a in expected if late_ids & set(a.event_ids)
    )


def assert_same_alerts(actual: list[Alert], expected: list[Alert]) -> None:
    """Equal by content, the alerts a late finding bridged included.

    A finding that reaches the windows of two alerts with one key, arriving after
    both, folds them into one: the in-order alert.
    """
    assert len(expected) > 50
    assert any(_bridged(alert) for alert in expected)
    assert Counter(content(a) for a in actual) == Counter(content(a) for a in expected)
