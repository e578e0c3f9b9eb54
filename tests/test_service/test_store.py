"""AlertStore on SQLite and, marked integration, on PostgreSQL: the same tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from fixtures_postgres import BASE_TIME, FindingFactory, StoreFactory
from pydantic import ValidationError

from service.alerts import MAX_EVENT_IDS, AlertQuery, alert_id
from service.dead_letters import MAX_STORED_PAYLOAD_BYTES, DeadLetter
from service.store import (
    AlertStore,
    InvalidCursor,
    StoreUnavailable,
    database_url,
    open_store,
)


async def test_save_findings_first_finding_creates_open_alert(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    finding = make_finding(0)

    [change] = await store.save_findings([finding])

    alert = change.alert
    assert change.created
    assert alert.id == alert_id(finding.dedup_key, "event-0000")
    assert (alert.status, alert.count, alert.event_ids) == ("open", 1, ["event-0000"])
    assert alert.first_seen == alert.last_seen == alert.event_time == BASE_TIME
    assert alert.third_party == "acme-analytics"
    assert alert.details == {"mfa_authenticated": False}
    assert await store.get_alert(alert.id) == alert


async def test_save_findings_repeat_in_window_updates_one_alert(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    await store.save_findings([make_finding(0)])

    [change] = await store.save_findings([make_finding(30)])

    assert not change.created
    assert change.alert.count == 2
    assert change.alert.event_ids == ["event-0000", "event-0030"]
    assert change.alert.first_seen == BASE_TIME
    assert change.alert.last_seen == BASE_TIME + timedelta(minutes=30)
    assert change.alert.event_time == BASE_TIME
    assert await store.get_alert(change.alert.id) == change.alert


async def test_save_findings_earlier_event_in_window_moves_first_seen(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    await store.save_findings([make_finding(60)])

    [change] = await store.save_findings([make_finding(10)])

    assert change.alert.count == 2
    assert change.alert.first_seen == BASE_TIME + timedelta(minutes=10)
    assert change.alert.last_seen == BASE_TIME + timedelta(minutes=60)


@pytest.mark.parametrize("order", [(0, 50, 100), (0, 100, 50), (100, 0, 50)])
async def test_save_findings_late_finding_between_two_alerts_folds_them(
    store: AlertStore, make_finding: FindingFactory, order: tuple[int, int, int]
) -> None:
    """Arrival order does not change the alert: a bridging finding folds two."""
    for minute in order:
        await store.save_findings([make_finding(minute)])

    page = await store.list_alerts(AlertQuery(), limit=10, cursor=None)

    [alert] = page.items
    assert alert.count == 3
    assert sorted(alert.event_ids) == ["event-0000", "event-0050", "event-0100"]
    assert alert.first_seen == BASE_TIME
    assert alert.last_seen == BASE_TIME + timedelta(minutes=100)


async def test_save_findings_event_outside_window_opens_new_alert(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    [first] = await store.save_findings([make_finding(0)])

    [second] = await store.save_findings([make_finding(61)])

    assert second.created
    assert second.alert.id != first.alert.id
    assert (await store.get_alert(first.alert.id)).count == 1  # type: ignore[union-attr]


async def test_save_findings_window_is_configurable(
    store_factory: StoreFactory, make_finding: FindingFactory
) -> None:
    store = await store_factory(dedup_window=timedelta(minutes=5))

    changes = await store.save_findings([make_finding(0), make_finding(6)])

    assert [change.created for change in changes] == [True, True]


async def test_save_findings_other_dedup_key_opens_new_alert(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    changes = await store.save_findings(
        [make_finding(0), make_finding(1, dedup_key="mfa-missing|other|1")]
    )

    assert [change.created for change in changes] == [True, True]


async def test_save_findings_same_event_twice_changes_nothing(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    [created] = await store.save_findings([make_finding(0)])

    within_batch = await store.save_findings([make_finding(5), make_finding(5)])
    replayed = await store.save_findings([make_finding(0), make_finding(5)])

    assert len(within_batch) == 1
    assert replayed == []
    assert (await store.get_alert(created.alert.id)).count == 2  # type: ignore[union-attr]


async def test_save_findings_replay_after_newer_alert_changes_nothing(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    """An old event replayed after a later alert opened finds its own alert."""
    await store.save_findings([make_finding(0), make_finding(120)])

    changes = await store.save_findings([make_finding(0)])

    page = await store.list_alerts(AlertQuery(), limit=10, cursor=None)
    assert changes == []
    assert [alert.count for alert in page.items] == [1, 1]


async def test_save_findings_replay_into_new_store_gives_same_ids(
    store_factory: StoreFactory, make_finding: FindingFactory
) -> None:
    findings = [make_finding(0), make_finding(200), make_finding(400)]
    first = await store_factory()
    ids = [change.alert.id for change in await first.save_findings(findings)]
    replay = open_store("sqlite://")
    await replay.start()

    try:
        replay_ids = [c.alert.id for c in await replay.save_findings(findings)]
    finally:
        await replay.close()

    assert replay_ids == ids
    assert len(set(ids)) == 3


async def test_save_findings_event_ids_are_bounded_count_is_not(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    findings = [make_finding(n) for n in range(MAX_EVENT_IDS + 5)]

    changes = await store.save_findings(findings)

    alert = changes[-1].alert
    assert alert.count == MAX_EVENT_IDS + 5
    assert alert.event_ids == [f"event-{n:04d}" for n in range(MAX_EVENT_IDS)]


async def test_save_findings_no_event_time_merges_into_newest_alert(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    await store.save_findings([make_finding(0)])

    [change] = await store.save_findings([make_finding(1, event_time=None)])

    assert not change.created
    assert change.alert.count == 2
    assert change.alert.last_seen == BASE_TIME


async def test_save_findings_no_event_time_new_alert_uses_processing_time(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    before = datetime.now(UTC)

    [change] = await store.save_findings([make_finding(0, event_time=None)])

    after = datetime.now(UTC)
    assert change.alert.event_time is None
    assert before <= change.alert.first_seen <= after


async def test_save_findings_no_event_id_counts_every_finding(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    finding = make_finding(0, event_id=None)

    changes = await store.save_findings([finding, finding])

    assert changes[-1].alert.count == 2
    assert changes[-1].alert.event_ids == []
    assert changes[0].alert.id == alert_id(finding.dedup_key, BASE_TIME.isoformat())


async def test_save_findings_other_offset_reads_back_as_utc(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    tokyo = BASE_TIME.astimezone(timezone(timedelta(hours=9)))

    [change] = await store.save_findings([make_finding(0, event_time=tokyo)])

    stored = await store.get_alert(change.alert.id)
    assert stored is not None
    assert stored.first_seen == BASE_TIME
    assert stored.first_seen.utcoffset() == timedelta(0)
    assert stored.event_time is not None
    assert stored.event_time.tzinfo is not None


async def test_save_findings_failing_finding_rolls_back_batch(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    bad = make_finding(1, dedup_key="other", severity="catastrophic")

    with pytest.raises(ValidationError):
        await store.save_findings([make_finding(0), bad])

    page = await store.list_alerts(AlertQuery(), limit=10, cursor=None)
    assert page.items == []


async def test_save_findings_odd_text_is_stored(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    """NUL characters, which PostgreSQL text refuses, are dropped, not fatal."""
    finding = make_finding(
        0,
        actor="arn:aws:iam::1:user/a\x00b",
        dedup_key="k\x00",
        details={"when": BASE_TIME, "ip": "203.0.113.1", 7: "seven"},
    )

    [change] = await store.save_findings([finding])

    stored = await store.get_alert(change.alert.id)
    assert stored is not None
    assert stored.actor == "arn:aws:iam::1:user/ab"
    assert stored.details == {
        "when": "2024-05-01T12:00:00+00:00",
        "ip": "203.0.113.1",
        "7": "seven",
    }
    assert stored == change.alert


async def test_save_findings_empty_batch_returns_nothing(store: AlertStore) -> None:
    assert await store.save_findings([]) == []


async def test_get_alert_unknown_id_returns_none(store: AlertStore) -> None:
    assert await store.get_alert("no-such-alert") is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (AlertQuery(), ["c", "b", "a"]),
        (AlertQuery(detector="outside-business-hours"), ["b"]),
        (AlertQuery(severity="critical"), ["c"]),
        (AlertQuery(third_party="globex"), ["c"]),
        (AlertQuery(account_id="444455556666"), ["b"]),
        (AlertQuery(status="open"), ["c", "b", "a"]),
        (AlertQuery(status="resolved"), []),
        (AlertQuery(detector="outside-business-hours", third_party="globex"), []),
        # a spans 12:00-12:30, b 14:00, c 16:00.
        (AlertQuery(since=BASE_TIME + timedelta(minutes=30)), ["c", "b", "a"]),
        (AlertQuery(since=BASE_TIME + timedelta(minutes=31)), ["c", "b"]),
        (AlertQuery(until=BASE_TIME + timedelta(hours=2)), ["a"]),
        (
            AlertQuery(
                since=BASE_TIME + timedelta(hours=1),
                until=BASE_TIME + timedelta(hours=3),
            ),
            ["b"],
        ),
    ],
)
async def test_list_alerts_filters_select_matching(
    store: AlertStore,
    make_finding: FindingFactory,
    query: AlertQuery,
    expected: list[str],
) -> None:
    await store.save_findings(
        [
            make_finding(0, title="a", dedup_key="a"),
            make_finding(30, title="a", dedup_key="a"),
            make_finding(
                120,
                title="b",
                dedup_key="b",
                detector="outside-business-hours",
                account_id="444455556666",
            ),
            make_finding(
                240, title="c", dedup_key="c", severity="critical", third_party="globex"
            ),
        ]
    )

    page = await store.list_alerts(query, limit=10, cursor=None)

    assert [alert.title for alert in page.items] == expected


async def test_list_alerts_pages_stay_stable_while_alerts_arrive(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    await store.save_findings([make_finding(n, dedup_key=f"k{n}") for n in range(5)])

    first = await store.list_alerts(AlertQuery(), limit=2, cursor=None)
    await store.save_findings([make_finding(n, dedup_key=f"k{n}") for n in (50, 51)])
    await store.save_findings([make_finding(9, dedup_key="k2")])  # updates page 2
    second = await store.list_alerts(AlertQuery(), limit=2, cursor=first.next_cursor)
    third = await store.list_alerts(AlertQuery(), limit=2, cursor=second.next_cursor)

    keys = [a.event_ids[0] for page in (first, second, third) for a in page.items]
    assert keys == [f"event-{n:04d}" for n in (4, 3, 2, 1, 0)]
    assert second.items[0].count == 2
    assert third.next_cursor is None


async def test_list_alerts_exact_last_page_has_no_cursor(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    await store.save_findings([make_finding(n, dedup_key=f"k{n}") for n in range(2)])

    page = await store.list_alerts(AlertQuery(), limit=2, cursor=None)

    assert len(page.items) == 2
    assert page.next_cursor is None


@pytest.mark.parametrize("cursor", ["", "not a cursor", "c2VxOmFiYw", "x" * 65])
async def test_list_alerts_foreign_cursor_raises(
    store: AlertStore, cursor: str
) -> None:
    with pytest.raises(InvalidCursor):
        await store.list_alerts(AlertQuery(), limit=10, cursor=cursor)


async def test_list_alerts_zero_limit_raises(store: AlertStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list_alerts(AlertQuery(), limit=0, cursor=None)


async def test_dead_letters_round_trip_newest_first(store: AlertStore) -> None:
    received = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    letters = [
        DeadLetter("cloudtrail", 3, 1042, "not_json", "byte 0", b"\x00\xff", received),
        DeadLetter(
            "logs/a.json.gz", None, None, "bad_gzip", "truncated", b"", received
        ),
    ]

    await store.save_dead_letters(letters)

    assert await store.list_dead_letters() == letters[::-1]
    assert await store.list_dead_letters(limit=1) == letters[1:]


async def test_dead_letters_large_payload_is_cut_and_size_kept(
    store: AlertStore,
) -> None:
    payload = b"x" * (MAX_STORED_PAYLOAD_BYTES + 10)
    letter = DeadLetter("t", 0, 1, "too_large", "big", payload, datetime.now(UTC))

    await store.save_dead_letters([letter])

    [stored] = await store.list_dead_letters()
    assert stored.payload == payload[:MAX_STORED_PAYLOAD_BYTES]
    assert stored.size == len(payload)


async def test_ping_started_store_succeeds(store: AlertStore) -> None:
    await store.ping()


async def test_store_closed_raises_unavailable(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    await store.close()

    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.save_findings([make_finding(0)])
    with pytest.raises(StoreUnavailable):
        await store.list_alerts(AlertQuery(), limit=1, cursor=None)


async def test_store_restarted_keeps_alerts(
    store: AlertStore, make_finding: FindingFactory
) -> None:
    [change] = await store.save_findings([make_finding(0)])
    await store.close()

    await store.start()

    assert await store.get_alert(change.alert.id) == change.alert


async def test_start_missing_sqlite_directory_raises_unavailable() -> None:
    store = open_store("sqlite:////nonexistent-dir/trailwarden/alerts.db")

    with pytest.raises(StoreUnavailable, match="nonexistent-dir"):
        await store.start()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///trailwarden.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite"),
        ("postgresql://u:p@db/alerts", "postgresql+asyncpg"),
        ("postgres://u@db/alerts", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@db/alerts", "postgresql+asyncpg"),
    ],
)
def test_database_url_plain_scheme_gets_async_driver(url: str, driver: str) -> None:
    assert database_url(url).drivername == driver


@pytest.mark.parametrize(
    "url", ["mysql://u:secret@db/x", "postgresql+psycopg2://u@db/x", "not a url"]
)
def test_database_url_unsupported_raises_without_password(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        database_url(url)

    assert "secret" not in str(caught.value)


def test_open_store_negative_window_raises() -> None:
    with pytest.raises(ValueError, match="dedup_window"):
        open_store("sqlite://", dedup_window=timedelta(seconds=-1))
