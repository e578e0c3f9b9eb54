"""Alert model, deterministic ids, cursors and the pure dedup merge rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fixtures_postgres import BASE_TIME, FindingFactory

from service.alerts import MAX_EVENT_IDS, Alert, alert_id
from service.store import InvalidCursor
from service.store.cursor import decode_cursor, encode_cursor
from service.store.dedup import (
    alert_from_row,
    clean_text,
    json_details,
    merged_values,
    new_alert_values,
    window_around,
)

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def test_alert_id_same_input_same_id() -> None:
    assert alert_id("key", "event-1") == alert_id("key", "event-1")


@pytest.mark.parametrize(("key", "event"), [("key2", "event-1"), ("key", "event-2")])
def test_alert_id_other_input_other_id(key: str, event: str) -> None:
    assert alert_id(key, event) != alert_id("key", "event-1")


def test_alert_json_has_every_field_and_utc_times(make_finding: FindingFactory) -> None:
    alert = alert_from_row(new_alert_values(make_finding(0), NOW))

    body = orjson.loads(alert.model_dump_json())

    assert set(body) == {
        "id",
        "detector",
        "severity",
        "title",
        "third_party",
        "account_id",
        "actor",
        "source_ip",
        "region",
        "action",
        "event_time",
        "first_seen",
        "last_seen",
        "count",
        "event_ids",
        "status",
        "details",
    }
    assert body["first_seen"] == "2024-05-01T12:00:00Z"
    assert Alert.model_validate(body) == alert


def test_new_alert_values_no_event_time_uses_processing_time(
    make_finding: FindingFactory,
) -> None:
    values = new_alert_values(make_finding(0, event_time=None, event_id=None), NOW)

    assert values["first_seen"] == values["last_seen"] == NOW
    assert values["event_time"] is None
    assert values["event_ids"] == []
    assert values["id"] == alert_id(values["dedup_key"], NOW.isoformat())


def test_new_alert_values_naive_event_time_taken_as_utc(
    make_finding: FindingFactory,
) -> None:
    naive = BASE_TIME.replace(tzinfo=None)

    values = new_alert_values(make_finding(0, event_time=naive), NOW)

    assert values["first_seen"] == BASE_TIME


def test_merged_values_known_event_is_duplicate(make_finding: FindingFactory) -> None:
    row = {**new_alert_values(make_finding(0), NOW), "seq": 1}

    assert merged_values(row, make_finding(0), NOW) is None


def test_merged_values_full_event_ids_still_counts(
    make_finding: FindingFactory,
) -> None:
    row = {
        **new_alert_values(make_finding(0), NOW),
        "event_ids": [f"e{n}" for n in range(MAX_EVENT_IDS)],
        "count": MAX_EVENT_IDS,
    }

    changed = merged_values(row, make_finding(5), NOW)

    assert changed is not None
    assert changed["count"] == MAX_EVENT_IDS + 1
    assert len(changed["event_ids"]) == MAX_EVENT_IDS
    assert changed["last_seen"] == BASE_TIME + timedelta(minutes=5)


def test_window_around_edge_of_time_is_clamped() -> None:
    start, end = window_around(datetime.max.replace(tzinfo=UTC), timedelta(hours=1))

    assert end == datetime.max.replace(tzinfo=UTC)
    assert start < end


def test_window_around_start_of_time_is_clamped() -> None:
    start, _ = window_around(datetime.min.replace(tzinfo=UTC), timedelta(days=1))

    assert start == datetime.min.replace(tzinfo=UTC)


def test_clean_text_drops_nul_and_lone_surrogates() -> None:
    assert clean_text("a\x00b\ud800c") == "ab?c"


def test_json_details_unencodable_value_is_kept_as_text() -> None:
    details = json_details({"big": 2**70})

    assert details == {"unencodable": str({"big": 2**70})}


def test_json_details_datetime_and_int_keys_become_strings() -> None:
    assert json_details({"when": BASE_TIME, 1: "one"}) == {
        "when": "2024-05-01T12:00:00+00:00",
        "1": "one",
    }


@pytest.mark.parametrize("seq", [1, 42, 2**63 - 1])
def test_cursor_round_trip_returns_seq(seq: int) -> None:
    assert decode_cursor(encode_cursor(seq)) == seq


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "====",
        "a",
        "not base64!",
        encode_cursor(1)[:-1] + "*",
        "c2VxOjA",  # seq:0
        "c2VxOi0x",  # seq:-1
        "aGVsbG8",  # hello
        "c2VxOjk5OTk5OTk5OTk5OTk5OTk5OTk",  # beyond 2**63
        "__8",  # not ASCII once decoded
        "A" * 65,
    ],
)
def test_decode_cursor_foreign_text_raises(cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="invalid cursor"):
        decode_cursor(cursor)
